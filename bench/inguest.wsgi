# The "in-guest" half of the host-overhead figure (see bench/README.md).
#
# GET /loop?n=N calls the examples/hello Flask app N times directly, inside
# this one guest, with a minimal WSGI environ for GET / -- no HTTP, no host --
# and answers with the calls per second as plain text. Serve it with the same
# --python-path flags as examples/hello/hello.wsgi (the script's own directory
# is granted but not put on sys.path).
import io
import sys
import time
from urllib.parse import parse_qs

from app import app as flask_app

EXPECTED = b"Hello from Flask inside wasgi!\n"


def _environ():
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _call_once():
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)
        return lambda data: None

    result = flask_app(_environ(), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0] if status else "", body


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/loop":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"try /loop?n=3000\n"]
    try:
        n = int(parse_qs(environ.get("QUERY_STRING", "")).get("n", ["1000"])[0])
    except ValueError:
        n = 0
    if n < 1:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"n must be a positive integer\n"]

    # One checked call first: a broken app must not produce a fast figure.
    status, body = _call_once()
    if not status.startswith("200") or body != EXPECTED:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [("unexpected answer from the Flask app: %r %r\n" % (status, body)).encode()]

    started = time.perf_counter()
    for _ in range(n):
        _call_once()
    elapsed = time.perf_counter() - started

    text = "%.1f calls/s (%d calls in %.3fs)\n" % (n / elapsed, n, elapsed)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [text.encode()]
