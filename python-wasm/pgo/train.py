"""The training run for our CPython build's profile-guided optimisation.

    python train.py [SCALE]

Runs inside the instrumented python.wasm (python-wasm/pgo/train does that) and
does what a WSGI app served by wasgi spends its time on, so that clang lays
out and inlines the interpreter for it: Flask routes (plain, JSON, a form
with a signed session cookie, a 100-row Jinja page, a 404), a Flask-tutorial
style blog on sqlite3, Django (its admin login page, a template over ORM rows,
JSON, the middleware stack), and the standard library's everyday parts (json,
re, datetime, urllib.parse, http.cookies, email, hashlib/hmac, dataclasses,
exceptions, generators, sorting). Every part checks its answers: a run that
went wrong must not produce a profile.

The packages (Flask 3.1, Django 5.2) come from sys.path, which the caller sets.
Nothing is timed here; SCALE (default 1) multiplies the iterations.
"""

import base64
import dataclasses
import datetime
import decimal
import email.utils
import hashlib
import hmac
import http.cookies
import io
import json
import os
import re
import sqlite3
import sys
import tempfile
import textwrap
import urllib.parse

SCALE = int(sys.argv[1]) if len(sys.argv) > 1 else 1


def environ(method="GET", path="/", query="", body=b"", ctype="", cookie=""):
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk/4.1.0",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.5",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = ctype
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def call(app, env):
    """One WSGI call, as wasgi's bridge makes it: status, headers, body."""
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], body


def expect(cond, what):
    if not cond:
        sys.exit(f"train.py: {what}")


ROWS = [
    {
        "id": i,
        "name": f"Customer {i} & Sons <Ltd>" if i % 7 == 0 else f"Customer {i}",
        "email": f"user{i}@example.org",
        "amount": decimal.Decimal(i * 1234) / 100,
        "date": datetime.date(2026, 1 + i % 12, 1 + i % 28),
        "status": ("paid", "open", "overdue")[i % 3],
    }
    for i in range(100)
]

PAGE = """{% extends "base.html" %}
{% from "macros.html" import badge %}
{% block title %}Invoices ({{ rows|length }}){% endblock %}
{% block content %}
<table>
{% for row in rows %}
<tr class="{{ loop.cycle('odd', 'even') }}">
  <td><a href="{{ url_for('invoice', id=row.id) }}">{{ row.id }}</a></td>
  <td>{{ row.name }}</td><td>{{ row.email|lower }}</td>
  <td>{{ "%.2f"|format(row.amount) }}</td><td>{{ row.date.isoformat() }}</td>
  <td>{% if row.status == "overdue" %}<b>{{ badge(row.status) }}</b>{% else %}{{ badge(row.status) }}{% endif %}</td>
</tr>
{% endfor %}
</table>
{% endblock %}
"""
BASE = """<!doctype html><html><head><title>{% block title %}{% endblock %}</title></head>
<body><nav>{% for item in ["home", "invoices", "about"] %}<a href="/{{ item }}">{{ item|title }}</a>{% endfor %}</nav>
{% with messages = get_flashed_messages() %}{% for m in messages %}<p>{{ m }}</p>{% endfor %}{% endwith %}
{% block content %}{% endblock %}</body></html>
"""
MACROS = """{% macro badge(status) %}<span class="badge badge-{{ status }}">{{ status|upper }}</span>{% endmacro %}"""


def train_flask():
    import flask
    from jinja2 import DictLoader

    app = flask.Flask("train")
    app.secret_key = "train"
    app.jinja_loader = DictLoader({"page.html": PAGE, "base.html": BASE, "macros.html": MACROS})

    @app.route("/")
    def hello():
        return "Hello from Flask inside wasgi!\n"

    @app.route("/api/items/<int:n>")
    def items(n):
        return flask.jsonify(items=[{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(n)],
                             page=flask.request.args.get("page", 1, type=int))

    @app.route("/invoices")
    def invoices():
        return flask.render_template("page.html", rows=ROWS)

    @app.route("/invoice/<int:id>")
    def invoice(id):
        return f"invoice {id}"

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if flask.request.method == "POST":
            flask.session["user"] = flask.request.form["username"]
            flask.flash("logged in")
            return flask.redirect(flask.url_for("hello"))
        return flask.render_template_string("<form>{{ session.get('user', 'anonymous') }}</form>")

    for _ in range(300 * SCALE):
        status, _, body = call(app, environ())
        expect(status == "200 OK" and body == b"Hello from Flask inside wasgi!\n", f"flask hello: {status} {body!r}")
    for _ in range(60 * SCALE):
        status, _, body = call(app, environ(path="/invoices"))
        expect(status == "200 OK" and body.count(b"<tr class=") == 100 and b"&amp; Sons &lt;Ltd&gt;" in body,
               f"flask page: {status}")
    for _ in range(100 * SCALE):
        status, _, body = call(app, environ(path="/api/items/20", query="page=2"))
        expect(status == "200 OK" and json.loads(body)["page"] == 2, f"flask json: {status}")
    for _ in range(60 * SCALE):
        form = urllib.parse.urlencode({"username": "alice", "password": "pw"}).encode()
        status, headers, _ = call(app, environ("POST", "/login", body=form,
                                               ctype="application/x-www-form-urlencoded"))
        expect(status.startswith("302"), f"flask login: {status}")
        cookie = next(v for k, v in headers if k == "Set-Cookie").split(";")[0]
        status, _, body = call(app, environ(path="/login", cookie=cookie))
        expect(b"alice" in body, f"flask session: {body!r}")
        status, _, _ = call(app, environ(path="/missing"))
        expect(status.startswith("404"), f"flask 404: {status}")


def train_blog():
    """Flask's tutorial app (flaskr) in miniature: sqlite3 and a form."""
    import flask

    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.executescript("""
        CREATE TABLE user (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT UNIQUE NOT NULL, password TEXT NOT NULL);
        CREATE TABLE post (id INTEGER PRIMARY KEY AUTOINCREMENT, author_id INTEGER NOT NULL,
            created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, title TEXT NOT NULL, body TEXT NOT NULL,
            FOREIGN KEY (author_id) REFERENCES user (id));
    """)
    db.execute("INSERT INTO user (username, password) VALUES (?, ?)", ("alice", hashlib.sha256(b"pw").hexdigest()))
    app = flask.Flask("blog")
    app.secret_key = "blog"

    @app.route("/")
    def index():
        posts = db.execute("SELECT p.id, title, body, created, author_id, username FROM post p"
                           " JOIN user u ON p.author_id = u.id ORDER BY created DESC LIMIT 20").fetchall()
        return flask.render_template_string(
            "{% for p in posts %}<article><h1>{{ p['title'] }}</h1><p>{{ p['body'] }}</p>"
            "<small>by {{ p['username'] }} on {{ p['created'] }}</small></article>{% endfor %}", posts=posts)

    @app.route("/create", methods=["POST"])
    def create():
        db.execute("INSERT INTO post (title, body, author_id) VALUES (?, ?, ?)",
                   (flask.request.form["title"], flask.request.form["body"], 1))
        db.commit()
        return flask.redirect("/")

    for i in range(80 * SCALE):
        form = urllib.parse.urlencode({"title": f"Post {i}", "body": "Some <b>text</b> " * 10}).encode()
        status, _, _ = call(app, environ("POST", "/create", body=form, ctype="application/x-www-form-urlencoded"))
        expect(status.startswith("302"), f"blog create: {status}")
        status, _, body = call(app, environ())
        expect(status == "200 OK" and b"&lt;b&gt;" in body, f"blog index: {status}")


def train_django():
    import django
    from django.conf import settings

    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "train_urls.py"), "w") as f:
        f.write(textwrap.dedent("""
            from django.contrib import admin
            from django.contrib.auth.models import Group
            from django.http import JsonResponse, HttpResponse
            from django.template import engines
            from django.urls import path

            PAGE = engines["django"].from_string(
                "{% for g in groups %}<tr class='{% cycle 'odd' 'even' %}'><td>{{ g.id }}</td>"
                "<td>{{ g.name|title }}</td><td>{{ g.name|length }}</td></tr>{% endfor %}")

            def hello(request):
                return HttpResponse("Hello from Django inside wasgi!\\n")

            def groups(request):
                return HttpResponse(PAGE.render({"groups": Group.objects.order_by("name")[:100]}, request))

            def api(request):
                return JsonResponse({"groups": list(Group.objects.values("id", "name")[:50]),
                                     "q": request.GET.get("q", "")})

            urlpatterns = [path("", hello), path("groups/", groups), path("api/", api),
                           path("admin/", admin.site.urls)]
        """))
    sys.path.insert(0, tmp)
    settings.configure(
        DEBUG=False, SECRET_KEY="train", ALLOWED_HOSTS=["*"], ROOT_URLCONF="train_urls", USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                        "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles"],
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                    "django.contrib.sessions.middleware.SessionMiddleware",
                    "django.middleware.common.CommonMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware",
                    "django.contrib.messages.middleware.MessageMiddleware",
                    "django.middleware.clickjacking.XFrameOptionsMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                       "django.contrib.auth.context_processors.auth",
                                                       "django.contrib.messages.context_processors.messages"]}}],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        STATIC_URL="/static/",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0)
    Group.objects.bulk_create([Group(name=f"group {i:03d} <&>") for i in range(100)])
    User.objects.create_superuser("admin", "admin@example.org", "pw")
    app = get_wsgi_application()
    for _ in range(150 * SCALE):
        status, _, body = call(app, environ())
        expect(status == "200 OK" and body == b"Hello from Django inside wasgi!\n", f"django hello: {status}")
    for _ in range(30 * SCALE):
        status, _, body = call(app, environ(path="/admin/login/", query="next=/admin/"))
        expect(status == "200 OK" and b"csrfmiddlewaretoken" in body, f"django admin login: {status}")
        status, _, body = call(app, environ(path="/groups/"))
        expect(status == "200 OK" and body.count(b"<tr class=") == 100 and b"&lt;&amp;&gt;" in body,
               f"django groups: {status}")
        status, _, body = call(app, environ(path="/api/", query="q=x%20y"))
        expect(status == "200 OK" and json.loads(body)["q"] == "x y", f"django api: {status}")
        status, _, _ = call(app, environ(path="/admin/"))
        expect(status.startswith("302"), f"django admin redirect: {status}")
        status, _, _ = call(app, environ(path="/nothing/"))
        expect(status.startswith("404"), f"django 404: {status}")


@dataclasses.dataclass(order=True)
class Event:
    when: datetime.datetime
    kind: str
    payload: dict = dataclasses.field(default_factory=dict)


def train_stdlib():
    doc = {"users": [{"id": i, "name": f"user {i}", "email": f"u{i}@example.org", "score": i * 1.5,
                      "tags": ["x", "y", str(i)], "active": i % 2 == 0, "manager": None} for i in range(200)]}
    log = re.compile(r'(?P<ip>\d+\.\d+\.\d+\.\d+) - - \[(?P<when>[^\]]+)\] "(?P<method>\w+) (?P<path>\S+) '
                     r'HTTP/1\.[01]" (?P<status>\d{3}) (?P<size>\d+)')
    line = '127.0.0.1 - - [06/Dec/2026:19:47:01 +0000] "GET /invoices?page=2 HTTP/1.1" 200 5123'
    key = b"secret"
    for i in range(40 * SCALE):
        text = json.dumps(doc, sort_keys=True)
        expect(json.loads(text) == doc, "json round trip")
        m = log.match(line)
        expect(m and m["status"] == "200", "regex")
        expect(len(re.findall(r"\w+@\w+\.org", text)) == 200, "findall")
        expect(re.sub(r"\s+", " ", "a  b\t\tc\n d") == "a b c d", "re.sub")
        parts = urllib.parse.urlsplit(f"https://example.org:8443/a/b%20c?x={i}&y=%C3%A9#frag")
        q = urllib.parse.parse_qs(parts.query)
        expect(q["y"] == ["é"], "parse_qs")
        expect(urllib.parse.quote("a b/é") == "a%20b/%C3%A9", "quote")
        c = http.cookies.SimpleCookie()
        c.load('session="abc=="; theme=dark; Path=/')
        expect(c["theme"].value == "dark", "cookies")
        now = datetime.datetime(2026, 12, 6, 19, 47, i % 60, tzinfo=datetime.timezone.utc)
        expect(email.utils.parsedate_to_datetime(email.utils.format_datetime(now, usegmt=True)) == now, "dates")
        expect(now.strftime("%Y-%m-%d %H:%M:%S") == now.isoformat(" ")[:19], "strftime")
        sig = hmac.new(key, text.encode(), hashlib.sha256).digest()
        expect(base64.urlsafe_b64decode(base64.urlsafe_b64encode(sig)) == sig, "base64")
        events = sorted(Event(now - datetime.timedelta(minutes=j), ("a", "b", "c")[j % 3], {"j": j}) for j in range(200))
        expect(events[0].payload["j"] == 199, "dataclass order")
        counts = {}
        for e in events:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        expect(sum(counts.values()) == 200, "dict counts")
        total = 0
        for j in range(500):
            try:
                if j % 5 == 0:
                    raise KeyError(j)
                total += j
            except KeyError:
                total -= 1
        expect(total == 99900, f"exceptions {total}")
        squares = sum(x * x for x in range(1000) if x % 3)
        expect(squares == 221555889, f"generators {squares}")
        words = ("lorem ipsum dolor sit amet consectetur adipiscing elit " * 20).split()
        expect(" ".join(sorted(set(words), key=len)).count(" ") == 7, "sort by key")
        expect(f"{i:05d}|{i/3:.3f}|{'x':>4}|{i!r}" .startswith(f"{i:05d}"), "formatting")


def main():
    parts = [("stdlib", train_stdlib), ("flask", train_flask), ("blog", train_blog), ("django", train_django)]
    for name, part in parts:
        part()
        print(f"train.py: {name} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
