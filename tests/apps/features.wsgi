"""A plain WSGI app (no framework) that exercises the server, one path per feature."""

import hashlib
import io
import os
import sys
import time
import uuid
from urllib.parse import parse_qs

TOKEN = uuid.uuid4().hex  # made once per instance: module state persists
SERVED = 0


def _qs(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response, body, status="200 OK", extra=()):
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))] + list(extra))
    return [data]


def environ_json(environ):
    import json

    out = {}
    for key, value in environ.items():
        if isinstance(value, str):
            out[key] = value
        elif key == "wsgi.version":
            out[key] = list(value)
        elif isinstance(value, bool):
            out[key] = value
        else:
            out[key] = type(value).__name__
    return json.dumps(out, sort_keys=True)


class Closing:
    """An iterable whose close() leaves a marker file."""

    def __init__(self, marker, mode):
        self.marker, self.mode = marker, mode

    def __iter__(self):
        yield b"first chunk\n"
        if self.mode == "raise":
            raise RuntimeError("failure after the response started")
        if self.mode == "infinite":
            while True:
                yield b"x" * 65536

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def download(mb, progress):
    for i in range(mb * 16):
        if progress and i % 16 == 0:
            with open(progress, "w") as f:
                f.write(str(i))
        yield bytes([i % 256]) * 65536


def application(environ, start_response):
    global SERVED
    SERVED += 1
    path = environ["PATH_INFO"]
    q = _qs(environ)
    if path.startswith("/probe"):
        print("APP-CALLED", environ["REQUEST_METHOD"], path)
        return _text(start_response, "probe\n")
    if path == "/environ" or path.startswith("/environ/"):
        return _text(start_response, environ_json(environ), extra=[("Content-Type", "application/json")][:0])
    if path == "/upload":
        size = int(q.get("chunk", 65536))
        h, n = hashlib.sha256(), 0
        stream = environ["wsgi.input"]
        while True:
            block = stream.read(size)
            if not block:
                break
            h.update(block)
            n += len(block)
        return _text(start_response, f"{n} {h.hexdigest()}")
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        return _text(start_response, "|".join(l.decode() for l in lines))
    if path == "/readline":
        stream = environ["wsgi.input"]
        first = stream.readline()
        limited = stream.readline(3)
        rest = stream.readlines()
        return _text(start_response, repr([first, limited, rest]))
    if path == "/download":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return download(int(q.get("mb", 1)), q.get("progress"))
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(q["marker"], q.get("mode", "ok"))
    if path == "/raise":
        raise RuntimeError("boom-secret-detail")
    if path == "/print":
        print("PRINTED-stdout")
        print("PRINTED-stderr", file=sys.stderr)
        sys.stdout.write("PRINTED-partial")
        environ["wsgi.errors"].write("PRINTED-errors\n")
        return _text(start_response, "printed\n")
    if path == "/fd1":
        # Raw bytes to file descriptor 1, past sys.stdout (the first is no
        # frame kind, so on the stdio path the host sees a broken stream).
        os.write(1, b"raw-fd1-bytes\n")
        return _text(start_response, "wrote to fd 1\n")
    if path == "/exit":
        os._exit(3)
    if path == "/spin":
        while True:
            pass
    if path == "/alloc":
        hoard = bytearray(int(q.get("mb", "1")) << 20)
        return _text(start_response, f"allocated {len(hoard) >> 20} MiB")
    if path == "/recurse":
        def down(n):
            return down(n + 1)

        down(0)  # RecursionError at the default limit
    if path == "/deep-json":
        import json

        nested = []
        for _ in range(int(q.get("depth", "100000"))):
            nested = [nested]
        return _text(start_response, str(len(json.dumps(nested))))
    if path == "/abort":
        os.abort()  # a wasm trap (unreachable) inside wasi-libc
    if path == "/sleep":
        time.sleep(float(q.get("s", "0.5")))
        return _text(start_response, "slept\n")
    if path == "/rendezvous":
        # Two requests that can only both succeed if they run at the same time.
        d = q["dir"]
        open(os.path.join(d, q["me"]), "w").close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(os.path.join(d, q["other"])):
                return _text(start_response, f"met {TOKEN}")
            time.sleep(0.01)
        return _text(start_response, "alone", status="500 Alone")
    if path == "/head":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Head", "yes")])
        return [b"hello"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-")
        write(b"directly")
        return []
    if path == "/filewrapper":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"wrapped file body"), 4)
    if path == "/badheader":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"never"]
    if path == "/header-check":
        # One response head per case; "ok" first makes X-Seen a name the
        # bridge has already checked, so later cases test its values again.
        status, headers = {
            "ok": ("200 OK", [("X-Seen", "plain")]),
            "tab": ("200 OK", [("X-Seen", "a\tb")]),
            "latin1": ("200 OK", [("X-Seen", "caf\xe9")]),
            "crlf": ("200 OK", [("X-Seen", "a\r\nInjected: yes")]),
            "nul": ("200 OK", [("X-Seen", "a\0b")]),
            "euro": ("200 OK", [("X-Seen", "\u20ac")]),
            "name": ("200 OK", [("X-Seen", "plain"), ("X Seen", "plain")]),
            "status": ("200 O\rK", [("X-Seen", "plain")]),
        }[q["case"]]
        start_response(status, headers)
        return [b"checked"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"never"]
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("replaced")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced by exc_info"]
    if path == "/no-length":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"chunk-one ", b"chunk-two"])
    if path == "/instance":
        return _text(start_response, f"{TOKEN} {SERVED}")
    if path == "/status":
        return _text(start_response, "custom\n", status=q.get("s", "404 Not Found"))
    if path == "/hop":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("X-Kept", "1")])
        return [b"hop"]
    if path == "/write-file":
        target = q["path"]
        try:
            with open(target, "w") as f:
                f.write("written")
            return _text(start_response, "written")
        except OSError as e:
            return _text(start_response, f"denied: {type(e).__name__}")
    if path == "/read-file":
        try:
            with open(q["path"], "rb") as f:
                return _text(start_response, f.read())
        except OSError as e:
            return _text(start_response, f"denied: {type(e).__name__}")
    if path == "/env":
        return _text(start_response, "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
    if path == "/socket":
        import socket

        try:
            socket.create_connection(("127.0.0.1", int(q.get("port", "80"))), timeout=2)
            return _text(start_response, "connected")
        except OSError as e:
            return _text(start_response, f"no network: {type(e).__name__}")
    return _text(start_response, "not found\n", status="404 Not Found")
