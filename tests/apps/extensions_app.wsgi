# A Flask app using the C extensions of MarkupSafe, PyYAML, msgpack,
# SQLAlchemy and lxml, each from a pip-installed environment: every route says which
# module did the work and where it was loaded from ("built-in" inside wasgi).
import sys

import markupsafe
import msgpack
import sqlalchemy
import yaml
from lxml import etree
from flask import Flask, jsonify, render_template_string

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


application = app
