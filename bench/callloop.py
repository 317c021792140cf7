"""In-guest call loop: call a WSGI app N times inside this interpreter, no HTTP.

    python callloop.py flask|django|jinja N [ROUNDS [PATH:PATH...]]

Runs on any Python (native CPython, or a python.wasm under a WASI runner):
the Flask app is examples/hello/app.py, the Django app bench/djangohello, the
100-row Jinja page bench/jinjapage (bench/speed); their directories and
packages are put on sys.path from the fourth argument (not PYTHONPATH: some
interpreters run isolated from the environment). Prints one JSON line: the
app, N, the best and every round's microseconds per call, the interpreter's
version and platform. The first call is checked (`problem`, which bench/speed
also applies to every server's answer): a broken app must not give a fast
figure.
"""

import io
import json
import sys
import time

APPS = {
    "flask": ("app", "app", b"Hello from Flask inside wasgi!\n"),
    "django": ("djangohello.app", "application", b"Hello from Django inside wasgi!\n"),
    "jinja": ("jinjapage", "app", None),  # checked by jinja_page_problem
}


def jinja_page_problem(body):
    """What is wrong with a 100-row Jinja page, or None: exactly 100 rows,
    the names escaped (`&` and `<` in them), the last row and the footer there."""
    rows = body.count(b"<tr class=")
    if rows != 100:
        return f"{rows} <tr class= rows, not 100"
    for part in (b"Smith &amp; Sons", b"&lt;Acme&gt; Ltd", b'id="invoice-100"', b"</html>"):
        if part not in body:
            return f"no {part.decode()!r} in the page"
    if b"<Acme>" in body:
        return "a name is not escaped (<Acme>)"
    return None


def problem(which, status, body):
    """Why an answer of app `which` is wrong (status line or code, body bytes), or None."""
    expected = APPS[which][2]
    if not str(status).startswith("200"):
        return f"status {status!r}, not 200; body {body[:200]!r}"
    if expected is not None and body != expected:
        return f"body {body[:200]!r}, not {expected!r}"
    if which == "jinja":
        return jinja_page_problem(body)
    return None


def environ():
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


def call_once(app):
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)
        return lambda data: None

    result = app(environ(), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0] if status else "", body


def measure(which, n, rounds=3):
    """Imports the app, checks one call, warms up, then times `rounds` loops of n calls."""
    module, attr, _ = APPS[which]
    t0 = time.perf_counter()
    app = getattr(__import__(module, fromlist=[attr]), attr)
    import_s = time.perf_counter() - t0
    status, body = call_once(app)
    wrong = problem(which, status, body)
    if wrong:
        raise RuntimeError(f"unexpected answer from the {which} app: {wrong}")
    for _ in range(min(n, 200)):  # warm up
        call_once(app)
    per_call = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            call_once(app)
        per_call.append((time.perf_counter() - started) / n * 1e6)
    return {
        "app": which,
        "n": n,
        "us_per_call": min(per_call),
        "us_per_call_rounds": per_call,
        "import_s": import_s,
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


def main():
    which, n = sys.argv[1], int(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if len(sys.argv) > 4:
        sys.path[:0] = sys.argv[4].split(":")
    try:
        print(json.dumps(measure(which, n, rounds)))
    except RuntimeError as e:
        sys.exit(f"callloop: {e}")


if __name__ == "__main__":
    main()
