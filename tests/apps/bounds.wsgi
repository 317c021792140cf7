"""An app that hands the host too much: headers, log records, forged log
lines. Each path is one way; tests/tests/e2e/bounds.rs asserts what the client
and the server's log see."""
import sys
from urllib.parse import parse_qs


def _n(environ, default):
    return int(parse_qs(environ.get("QUERY_STRING", "")).get("n", [default])[0])


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/many-headers":
        # Through start_response: the bridge refuses, the app's error is a 500.
        start_response("200 OK", [(f"X-H{i}", "v") for i in range(_n(environ, 10000))])
        return [b"too many\n"]
    if path == "/huge-header":
        start_response("200 OK", [("X-Big", "v" * (10 << 20))])
        return [b"too big\n"]
    if path == "/raw-head":
        # Around the bridge, as a hostile guest would: the host's limit holds.
        bridge = sys.modules["wasgi_bridge"]
        fields = [b"200 OK"] + [f"X-H{i}\0v".encode() for i in range(_n(environ, 40000))]
        bridge.transport.send((b"S", b"\0".join(fields)))
        start_response("200 OK", [])
        return [b"raw\n"]
    if path == "/big-line":
        print("big:" + "x" * (10 << 20))
        return _ok(start_response)
    if path == "/big-record":
        raise ValueError("big:" + "y" * (10 << 20))
    if path == "/flood":
        for i in range(_n(environ, 10000)):
            print(f"flood line {i}")
        return _ok(start_response)
    if path.startswith("/crlf"):
        # The client's decoded path, in every way an app logs.
        print(f"print: {path}")
        environ["wsgi.errors"].write(f"errors: {path}\n")
        raise ValueError(f"raised: {path}")
    return _ok(start_response)


def _ok(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
