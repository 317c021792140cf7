# A WSGI app on PostgreSQL through psycopg2 from its pip-installed
# environment: psycopg2._psycopg, over libpq, is built into the group's
# interpreter, and libpq's C sockets are wasgi's host connections, under the
# group's [[connect]] grants (python-wasm/recipes/psycopg2.toml).
#
# GET /notes?host=H&port=P&user=U&password=W&db=D&notes=a,b: creates a
# table, inserts the notes and answers with every row (JSON); a psycopg2
# error is a 502 with its class and message.
import json
import sys
from urllib.parse import parse_qs

import psycopg2


def notes(q):
    con = psycopg2.connect(host=q["host"], port=q["port"], user=q["user"], password=q["password"],
                           dbname=q["db"], connect_timeout=10)
    try:
        with con, con.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS psycopg2_notes (id serial PRIMARY KEY, body text)")
            cur.executemany("INSERT INTO psycopg2_notes (body) VALUES (%s)", [(n,) for n in q["notes"].split(",")])
            cur.execute("SELECT id, body FROM psycopg2_notes ORDER BY id")
            rows = cur.fetchall()
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            tls = cur.fetchone()[0]
        return {"rows": rows, "ssl": tls, "server_version": con.server_version,
                "origin": sys.modules["psycopg2._psycopg"].__spec__.origin}
    finally:
        con.close()


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        body, status = notes(q), "200 OK"
    except psycopg2.Error as e:
        body, status = {"error": type(e).__name__, "message": str(e)}, "502 Bad Gateway"
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
