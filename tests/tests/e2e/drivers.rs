//! Real servers and unchanged drivers from PyPI inside the sandbox (issue
//! 17): Redis through redis-py, PostgreSQL through pg8000 (TCP, its Unix
//! socket, TLS), HTTPS through requests, urllib3, httpx and urllib, mail
//! through smtplib with STARTTLS; each also with a grant that does not
//! cover it. The servers are Debian's, installed and started by
//! `wasgi_tests::servers` on loopback, with their own data directories.

use std::time::Duration;

use super::network::write_app;

use wasgi_tests::servers::{HttpServer, MariaDb, Postgres, Redis, Smtp, TestCa, HELLO_BODY};
use wasgi_tests::{own_interpreter, pip_packages, TempDir, Wasgi};

/// The client drivers, from PyPI, for the guest.
fn drivers() -> std::path::PathBuf {
    pip_packages(
        "net-drivers",
        &["redis==5.2.*", "pg8000==1.31.*", "PyMySQL==1.1.*", "requests==2.32.*", "urllib3==2.*", "httpx==0.28.*"],
    )
}

/// Serves `source` with the drivers on its path and `args` (grants).
fn serve(dir: &TempDir, source: &str, args: &[&str]) -> Wasgi {
    own_interpreter();
    let script = write_app(dir.path(), source);
    let packages = drivers().display().to_string();
    let mut all = vec![script.as_str(), "--python-path", &packages, "--instances", "1"];
    all.extend_from_slice(args);
    Wasgi::start(&all)
}

/// A WSGI app whose paths each run one snippet of `ROUTES` and answer with
/// what it returns, or 502 and the exception.
fn app(routes: &str) -> String {
    format!(
        r#"import os, ssl, traceback
from urllib.parse import parse_qs
ENV = {{}}

{routes}

def application(environ, start_response):
    q = {{k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}}
    route = globals()["route_" + environ["PATH_INFO"].strip("/").replace("-", "_")]
    try:
        status, body = "200 OK", str(route(q))
    except Exception as e:
        status, body = "502 Bad Gateway", f"{{type(e).__name__}}: {{e}}"
        traceback.print_exc()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]
"#
    )
}

const REDIS_ROUTES: &str = r#"
import redis

def route_cache(q):
    r = redis.Redis.from_url(q["url"]) if "url" in q else redis.Redis(unix_socket_path=q["unix"])
    r.set("greeting", "hello from the sandbox")
    r.incr("hits")
    r.incr("hits")
    pipe = r.pipeline()
    pipe.set("big", b"x" * 200_000).get("big")
    big = pipe.execute()[1]
    return f"{r.get('greeting').decode()} hits={int(r.get('hits'))} big={len(big)}"
"#;

/// redis-py as a cache, over TCP and the server's Unix socket; a Redis the
/// grants do not name is refused and the log says which grant would do.
#[test]
fn redis_py_over_tcp_and_unix_socket() {
    let redis = Redis::start();
    let dir = TempDir::new("drivers-redis");
    let tcp = format!("127.0.0.1:{}", redis.port);
    let unix = format!("unix:{}", redis.socket.display());
    let server = serve(&dir, &app(REDIS_ROUTES), &["--connect", &tcp, "--connect", &unix]);
    let r = server.get(&format!("/cache?url={}", redis.url()));
    assert_eq!((r.status, r.text().as_str()), (200, "hello from the sandbox hits=2 big=200000"), "{}", server.log.text());
    let r = server.get(&format!("/cache?unix={}", redis.socket.display()));
    assert_eq!((r.status, r.text().as_str()), (200, "hello from the sandbox hits=4 big=200000"), "{}", server.log.text());
    assert_eq!(redis.command(&["GET", "hits"]).trim(), "4", "the guest's writes are in the real server");
    drop(server);

    let other = Redis::start();
    let server = serve(&dir, &app(REDIS_ROUTES), &["--connect", &tcp]);
    let r = server.get(&format!("/cache?url={}", other.url()));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("PermissionError") || r.text().contains("Error 2"), "{}", r.text());
    let log = server.log.wait_for(&format!("wasgi run --connect 127.0.0.1:{}", other.port), Duration::from_secs(10));
    assert!(log.contains(&format!("denied: connecting to 127.0.0.1:{}", other.port)), "{log}");
    let r = server.get(&format!("/cache?unix={}", redis.socket.display()));
    assert_eq!(r.status, 502, "{}", r.text());
    server.log.wait_for(&format!("denied: connecting to unix:{}", redis.socket.display()), Duration::from_secs(10));
}

const PG_ROUTES: &str = r#"
import pg8000.native

def connect(q):
    kw = dict(user=q["user"], password=q["password"], database=q["db"])
    if "unix" in q:
        kw["unix_sock"] = q["unix"]
    else:
        kw.update(host=q.get("host", "127.0.0.1"), port=int(q["port"]))
    if q.get("tls"):
        kw["ssl_context"] = ssl.create_default_context()
    return pg8000.native.Connection(**kw)

def route_sql(q):
    con = connect(q)
    try:
        con.run("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text)")
        con.run("INSERT INTO notes (body) VALUES (:b)", b=q["note"])
        count = con.run("SELECT count(*) FROM notes")[0][0]
        tls = con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0]
        return f"notes={count} ssl={tls}"
    finally:
        con.close()
"#;

/// pg8000 on PostgreSQL over TCP, over its Unix socket, and with TLS
/// verified against the CA the group trusts (sslmode=verify-full's
/// equivalent); a database on another port is refused.
#[test]
fn pg8000_over_tcp_unix_socket_and_tls() {
    let pg = Postgres::start();
    let dir = TempDir::new("drivers-pg");
    let ca = pg.ca_file.display().to_string();
    let tcp = format!("localhost:{}", pg.port);
    let unix = format!("unix:{}", pg.socket_path().display());
    let server = serve(&dir, &app(PG_ROUTES), &["--connect", &tcp, "--connect", &unix, "--ca-file", &ca]);
    let creds = format!("user={}&password={}&db={}", pg.user, pg.password, pg.database);
    // (pg8000 asks for TLS by itself when the server offers it, as libpq's sslmode=prefer.)
    let r = server.get(&format!("/sql?{creds}&host=localhost&port={}&note=first", pg.port));
    assert_eq!(r.status, 200, "{}", server.log.text());
    assert!(r.text().starts_with("notes=1 ssl="), "{}", r.text());
    let r = server.get(&format!("/sql?{creds}&unix={}&note=second", pg.socket_path().display()));
    assert_eq!((r.status, r.text().as_str()), (200, "notes=2 ssl=False"), "{}", server.log.text());
    let r = server.get(&format!("/sql?{creds}&host=localhost&port={}&tls=1&note=third", pg.port));
    assert_eq!((r.status, r.text().as_str()), (200, "notes=3 ssl=True"), "{}", server.log.text());
    assert_eq!(pg.query("SELECT string_agg(body, ',' ORDER BY id) FROM notes").trim(), "first,second,third");
    drop(server);

    // Without the test CA the server's certificate is not trusted.
    let server = serve(&dir, &app(PG_ROUTES), &["--connect", &tcp]);
    let r = server.get(&format!("/sql?{creds}&host=localhost&port={}&tls=1&note=x", pg.port));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("CERTIFICATE_VERIFY_FAILED"), "{}", r.text());
    // And a grant for the name does not cover the socket.
    let r = server.get(&format!("/sql?{creds}&unix={}&note=x", pg.socket_path().display()));
    assert_eq!(r.status, 502, "{}", r.text());
    // (pg8000 wraps the PermissionError in its own InterfaceError.)
    let log = server.log.wait_for("PermissionError", Duration::from_secs(10));
    assert!(log.contains(&format!("denied: connecting to unix:{}", pg.socket_path().display())), "{log}");
}

const HTTP_ROUTES: &str = r#"
import json

def route_requests(q):
    import requests
    s = requests.Session()
    hello = s.get(q["base"] + "/hello", timeout=10).text
    echoed = s.post(q["base"] + "/echo", data=b"y" * 300_000, timeout=10).content
    return f"{hello.strip()}|{len(echoed)}"

def route_httpx(q):
    import httpx
    with httpx.Client(verify=ssl.create_default_context()) as c:
        return c.get(q["base"] + "/hello").text.strip()

def route_urllib3(q):
    import urllib3
    return urllib3.PoolManager().request("GET", q["base"] + "/hello").data.decode().strip()

def route_urllib(q):
    import urllib.request
    return urllib.request.urlopen(q["base"] + "/hello", timeout=10).read().decode().strip()

def route_slow(q):
    import requests
    return requests.get(q["base"] + "/slow?s=30", timeout=float(q["timeout"])).text
"#;

/// HTTPS with certificate verification through requests, httpx, urllib3 and
/// urllib, against a server whose CA the group trusts; the same clients
/// refused where the grant or the CA does not cover the server.
#[test]
fn https_clients_verify_the_server_and_respect_their_grant() {
    let dir = TempDir::new("drivers-https");
    let ca = TestCa::new(dir.path());
    let https = HttpServer::start(Some(&ca));
    let grant = format!("localhost:{}", https.port);
    let ca_file = ca.ca.display().to_string();
    let server = serve(&dir, &app(HTTP_ROUTES), &["--connect", &grant, "--ca-file", &ca_file]);
    let base = https.base_url();
    let hello = HELLO_BODY.trim();
    let r = server.get(&format!("/requests?base={base}"));
    assert_eq!((r.status, r.text()), (200, format!("{hello}|300000")), "{}", server.log.text());
    for client in ["httpx", "urllib3", "urllib"] {
        let r = server.get(&format!("/{client}?base={base}"));
        assert_eq!((r.status, r.text().as_str()), (200, hello), "{client}: {}", server.log.text());
    }
    // A stalled response is cut by the client's own timeout, and the
    // instance serves the next request.
    let r = server.get(&format!("/slow?base={base}&timeout=1"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("ReadTimeout") || r.text().contains("timed out"), "{}", r.text());
    let r = server.get(&format!("/urllib?base={base}"));
    assert_eq!(r.status, 200, "{}", r.text());
    drop(server);

    // The host's own CA store does not know the test CA.
    let server = serve(&dir, &app(HTTP_ROUTES), &["--connect", &grant]);
    let r = server.get(&format!("/requests?base={base}"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("CERTIFICATE_VERIFY_FAILED"), "{}", r.text());
    drop(server);

    // No grant for the port: refused before any byte leaves.
    let server = serve(&dir, &app(HTTP_ROUTES), &["--connect", "localhost:1", "--ca-file", &ca_file]);
    let r = server.get(&format!("/urllib?base={base}"));
    assert_eq!(r.status, 502, "{}", r.text());
    let log = server.log.wait_for(&format!("--connect localhost:{}", https.port), Duration::from_secs(10));
    assert!(log.contains("denied: connecting to"), "{log}");
}

const SMTP_ROUTES: &str = r#"
import smtplib
from email.message import EmailMessage

def route_mail(q):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "app@example.com", "ops@example.com", "sent from the sandbox"
    msg.set_content("a mail, over STARTTLS")
    with smtplib.SMTP(q["host"], int(q["port"]), timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context())
        smtp.login("wasgi", "wasgi")
        smtp.send_message(msg)
    return "sent"
"#;

/// smtplib sends a mail over STARTTLS (verified) with a login.
#[test]
fn smtplib_sends_mail_over_starttls() {
    let dir = TempDir::new("drivers-smtp");
    let ca = TestCa::new(dir.path());
    let smtp = Smtp::start(Some(&ca));
    let ca_file = ca.ca.display().to_string();
    let server = serve(&dir, &app(SMTP_ROUTES), &["--connect", &format!("localhost:{}", smtp.port), "--ca-file", &ca_file]);
    let r = server.get(&format!("/mail?host=localhost&port={}", smtp.port));
    assert_eq!((r.status, r.text().as_str()), (200, "sent"), "{}", server.log.text());
    let mails = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert!(mails[0].contains("Subject: sent from the sandbox") && mails[0].contains("a mail, over STARTTLS"), "{}", mails[0]);
    let r = server.get("/mail?host=localhost&port=25");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("PermissionError"), "{}", r.text());
}

const PYMYSQL_ROUTES: &str = r#"
import pymysql

def route_sql(q):
    con = pymysql.connect(host="127.0.0.1", port=int(q["port"]), user=q["user"], password=q["password"], database=q["db"])
    with con:
        with con.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
            cur.execute("INSERT INTO t (v) VALUES (%s)", (q["v"],))
            con.commit()
            cur.execute("SELECT COUNT(*) FROM t")
            return f"rows={cur.fetchone()[0]}"
"#;

/// PyMySQL on MariaDB.
#[test]
fn pymysql_on_mariadb() {
    let db = MariaDb::start();
    let dir = TempDir::new("drivers-mariadb");
    let server = serve(&dir, &app(PYMYSQL_ROUTES), &["--connect", &format!("127.0.0.1:{}", db.port)]);
    let creds = format!("user={}&password={}&db={}", db.user, db.password, db.database);
    for n in 1..=2 {
        let r = server.get(&format!("/sql?{creds}&port={}&v=row{n}", db.port));
        assert_eq!((r.status, r.text()), (200, format!("rows={n}")), "{}", server.log.text());
    }
    assert!(db.query("SELECT GROUP_CONCAT(v ORDER BY id) FROM t").contains("row1,row2"));
}

const FLASK_SQLALCHEMY_APP: &str = r#"import os
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Note(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str]


app = Flask(__name__)
with open(os.path.join(os.path.dirname(__file__), "database_url")) as f:
    app.config["SQLALCHEMY_DATABASE_URI"] = f.read().strip()
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}
db.init_app(app)
# Connects while the script is imported, as many apps do.
with app.app_context():
    db.create_all()


@app.post("/notes")
def create():
    note = Note(body=request.get_data(as_text=True))
    db.session.add(note)
    db.session.commit()
    return jsonify(id=note.id), 201


@app.get("/notes")
def index():
    return jsonify([[n.id, n.body] for n in db.session.scalars(db.select(Note).order_by(Note.id))])


@app.put("/notes/<int:note_id>")
def update(note_id):
    note = db.get_or_404(Note, note_id)
    note.body = request.get_data(as_text=True)
    db.session.commit()
    return jsonify(id=note.id, body=note.body)


application = app
"#;

/// Flask with Flask-SQLAlchemy on PostgreSQL (the pg8000 dialect): the
/// tables are made while the script is imported, rows are created, read and
/// updated over HTTP, and they are in the real database.
#[test]
fn flask_sqlalchemy_on_postgresql_through_pg8000() {
    own_interpreter();
    let pg = Postgres::start();
    let packages = pip_packages("flask-sqlalchemy-pg8000", &["flask==3.1.*", "flask-sqlalchemy==3.1.*", "sqlalchemy==2.0.*", "pg8000==1.31.*"]);
    let dir = TempDir::new("drivers-flask-pg");
    let script = write_app(dir.path(), FLASK_SQLALCHEMY_APP);
    std::fs::write(dir.path().join("database_url"), format!("postgresql+pg8000://{}:{}@localhost:{}/{}", pg.user, pg.password, pg.port, pg.database)).unwrap();
    let grant = format!("localhost:{}", pg.port);
    let packages = packages.display().to_string();
    let server = Wasgi::start(&[&script, "--python-path", &packages, "--instances", "1", "--connect", &grant]);
    for (body, id) in [("first note", 1), ("second note", 2)] {
        let r = server.post("/notes", body.as_bytes());
        assert_eq!((r.status, r.text()), (201, format!("{{\"id\":{id}}}\n")), "{}", server.log.text());
    }
    let r = server.request(b"PUT /notes/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\nConnection: close\r\n\r\nupdated");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.get("/notes");
    assert_eq!((r.status, r.text().as_str()), (200, "[[1,\"first note\"],[2,\"updated\"]]\n"), "{}", server.log.text());
    assert_eq!(pg.query("SELECT body FROM note ORDER BY id").trim(), "first note\nupdated");
    drop(server);

    // From a snapshot: the connection the import opened is not in it (the
    // log says so), and the pool's pre-ping opens another in each instance.
    let server = Wasgi::start(&[&script, "--python-path", &packages, "--instances", "2", "--connect", &grant, "--snapshot"]);
    let log = server.log.wait_for("were closed before the snapshot", Duration::from_secs(60));
    assert!(log.contains(&format!("1 connection(s) the app opened while it was imported (127.0.0.1:{})", pg.port)), "{log}");
    let r = server.post("/notes", b"from a snapshot");
    assert_eq!((r.status, r.text().as_str()), (201, "{\"id\":3}\n"), "{}", server.log.text());
    for _ in 0..4 {
        let r = server.get("/notes");
        assert_eq!(r.status, 200, "{}", server.log.text());
        assert!(r.text().ends_with("[3,\"from a snapshot\"]]\n"), "{}", r.text());
    }
    drop(server);

    // Without its grant the app cannot start, and the log says why.
    let server = Wasgi::spawn(&[&script, "--python-path", &packages, "--instances", "1"]);
    server.log.wait_for("[[connect]]", Duration::from_secs(60));
}
