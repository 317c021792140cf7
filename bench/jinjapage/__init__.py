"""The 100-row Jinja page of bench/speed: a realistic server-rendered table.

GET / renders templates/invoices.html (extends base.html, imports a macro
from macros.html) over 100 invoice rows built once at import: autoescaping
is on (Flask's default for .html), names carry `&`, `<` and quotes, amounts
go through a filter, dates are real dates, statuses take an if/else and a
CSS class, and every row links to its invoice with url_for. The same app
runs under every server (the package is importable as `jinjapage`; page.wsgi
is its .wsgi file) and in bench/callloop.py's `jinja` loop.
"""

import datetime

from flask import Flask, render_template

app = Flask(__name__)

_FIRST = ["Ada", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Guido", "Radia"]
_LAST = ["Lovelace", "Hopper", "O'Neil", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "van Rossum", "Perlman"]
_COMPANY = ["Smith & Sons", "<Acme> Ltd", "Müller GmbH", "\"Quoted\" Inc", "Plain Co"]
_STATUS = ["paid", "open", "overdue", "paid", "draft"]


def _rows():
    start = datetime.date(2026, 1, 5)
    rows = []
    for i in range(1, 101):
        first, last = _FIRST[i % 10], _LAST[(i * 3) % 10]
        rows.append({
            "id": i,
            "name": f"{first} {last} ({_COMPANY[i % 5]})",
            "email": f"{first.lower()}.{last.lower().replace(' ', '').replace(chr(39), '')}{i}@example.org",
            "amount": (i * 7919 % 100000) / 100 + i * 13.37,
            "date": start + datetime.timedelta(days=i * 3),
            "status": _STATUS[i % 5],
        })
    return rows


ROWS = _rows()
TOTAL = sum(r["amount"] for r in ROWS)


@app.template_filter("money")
def money(value):
    return f"€{value:,.2f}"


@app.route("/")
def invoices():
    return render_template("invoices.html", rows=ROWS, total=TOTAL, title="Invoices")


@app.route("/invoice/<int:invoice_id>")
def invoice(invoice_id):
    return f"invoice {invoice_id}\n"
