"""bench/network's Flask page that does one query: GET / reads 10 products
from PostgreSQL with pg8000 (one `SELECT ... LIMIT 10` per request, no ORM)
and renders them as a small HTML table with templates/products.html
(autoescaped: the names hold `&`, `<` and quotes; Flask compiles the
template once per process and keeps it).

The database is named by the module `netpage_config` (DB: pg8000.native.
Connection's keyword arguments), which bench/network writes into a
directory it puts on the path (wasgi's --python-path, gunicorn's
--pythonpath). Each process (a wasgi instance, a gunicorn worker) opens one
connection at its first request and keeps it, as a pool of one would.
"""

import pg8000.native
from flask import Flask, render_template

import netpage_config

app = Flask(__name__)

QUERY = "SELECT id, name, price FROM products ORDER BY id LIMIT 10"

_con = None


def connection():
    global _con
    if _con is None:
        _con = pg8000.native.Connection(**netpage_config.DB)
    return _con


@app.get("/")
def index():
    rows = connection().run(QUERY)
    return render_template("products.html", rows=rows)


# Rows bench/network inserts, and what a right page holds.
ROWS = [(i, name, f"{i * 3 + 0.5:.2f}") for i, name in enumerate(
    ["Smith & Sons", "<Acme> Ltd", 'The "Quoted" Co', "Plain Widgets", "Gizmo d'Or",
     "Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta (not shown)"], start=1)]


def page_problem(status, body):
    """Why an answer of GET / is wrong, or None."""
    if status != 200:
        return f"status {status}, not 200; body {body[:200]!r}"
    if body.count("<tr id=") != 10:
        return f"{body.count('<tr id=')} rows, not 10: {body[:300]!r}"
    for part in ("<h1>10 products</h1>", "Smith &amp; Sons", "&lt;Acme&gt; Ltd", "The &#34;Quoted&#34; Co",
                 '<tr id="p10"><td>10</td><td>Epsilon</td><td>30.50</td></tr>', "</html>"):
        if part not in body:
            return f"no {part!r} in the page: {body[:300]!r}"
    if "<Acme>" in body or "Zeta" in body:
        return "a name is not escaped, or an 11th row is there"
    return None
