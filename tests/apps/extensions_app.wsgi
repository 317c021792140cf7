# A Flask app using the C extensions of MarkupSafe, PyYAML, msgpack,
# SQLAlchemy and lxml and the Rust (PyO3) extensions of bcrypt, orjson and
# pydantic, each from a pip-installed environment: every route says which
# module did the work and where it was loaded from ("built-in" inside wasgi).
import sys
from typing import Optional

import bcrypt
import markupsafe
import msgpack
import orjson
import pydantic
import sqlalchemy
import yaml
from lxml import etree
from flask import Flask, Response, jsonify, render_template_string, request

app = Flask(__name__)


def origin(module):
    return sys.modules[module].__spec__.origin if module in sys.modules else None


@app.route("/markupsafe")
def escape():
    page = render_template_string("<p>{{ s }}</p>", s="<a href='x'>&")
    return jsonify(page=page, origin=origin("markupsafe._speedups"), version=markupsafe.__version__
                   if hasattr(markupsafe, "__version__") else None)


@app.route("/yaml")
def load_yaml():
    doc = yaml.load("name: wasgi\nitems: [1, 2.5, three]\nnested: {a: true}\n", Loader=yaml.CLoader)
    dumped = yaml.dump({"b": [1, 2]}, Dumper=yaml.CDumper)
    return jsonify(doc=doc, dumped=dumped, with_libyaml=yaml.__with_libyaml__, origin=origin("yaml._yaml"))


@app.route("/msgpack")
def pack():
    data = {"a": [1, 2.5, "x"], "b": {"c": None}}
    packed = msgpack.packb(data)
    return jsonify(same=msgpack.unpackb(packed) == data, size=len(packed), packer=msgpack.Packer.__module__,
                   origin=origin("msgpack._cmsgpack"))


@app.route("/sqlalchemy")
def query():
    from sqlalchemy.util._has_cython import HAS_CYEXTENSION

    engine = sqlalchemy.create_engine("sqlite://")
    meta = sqlalchemy.MetaData()
    items = sqlalchemy.Table("items", meta, sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
                             sqlalchemy.Column("name", sqlalchemy.String))
    meta.create_all(engine)
    with engine.begin() as c:
        c.execute(items.insert(), [{"name": f"item {i}"} for i in range(50)])
        rows = c.execute(sqlalchemy.select(items).where(items.c.id > 45).order_by(items.c.id)).all()
    return jsonify(rows=[list(r) for r in rows], cython=HAS_CYEXTENSION,
                   origin=origin("sqlalchemy.engine._row_cy"))


@app.route("/lxml")
def xml():
    doc = etree.fromstring(b"<catalog><book id='1'><title>Dune</title><price>9.5</price></book>"
                           b"<book id='2'><title>Emma &amp; Co</title><price>4</price></book></catalog>")
    cheap = doc.xpath("//book[price < 5]/title/text()")
    total = doc.xpath("sum(//price)")
    html = etree.tostring(etree.HTML("<p>unclosed <b>bold"), method="html").decode()
    return jsonify(cheap=cheap, total=total, html=html, origin=origin("lxml.etree"))


@app.route("/bcrypt", methods=["POST"])
def hash_password():
    """A password hashed with a given salt (so the hash is reproducible) and
    checked, right and wrong."""
    password = request.get_data()
    hashed = bcrypt.hashpw(password, request.args["salt"].encode())
    return jsonify(hash=hashed.decode(), right=bcrypt.checkpw(password, hashed),
                   wrong=bcrypt.checkpw(password + b"!", hashed), origin=origin("bcrypt._bcrypt"))


@app.route("/orjson", methods=["POST"])
def reserialize():
    """The posted JSON loaded by orjson and dumped again with sorted keys."""
    doc = orjson.loads(request.get_data())
    return Response(orjson.dumps({"doc": doc, "origin": origin("orjson.orjson")}, option=orjson.OPT_SORT_KEYS),
                    mimetype="application/json")


class Order(pydantic.BaseModel):
    id: int
    customer: str = pydantic.Field(min_length=2)
    items: list[int]
    note: Optional[str] = None


@app.route("/pydantic", methods=["POST"])
def validate():
    """An order validated by pydantic: the model's JSON, or its errors."""
    try:
        order = Order.model_validate_json(request.get_data())
    except pydantic.ValidationError as e:
        return jsonify(errors=[{"loc": list(err["loc"]), "type": err["type"]} for err in e.errors()],
                       origin=origin("pydantic_core._pydantic_core")), 422
    return jsonify(order=order.model_dump(), origin=origin("pydantic_core._pydantic_core"))


application = app
