"""Returns the WSGI environ as JSON, for comparing servers key by key.

Plain WSGI, no framework; runs on Python 3.11 (Debian's mod_wsgi) and 3.12
(wasgi's guest). Each key maps to:

- a str value as is;
- bool, int, None and tuples of those as "<type> repr", e.g. "<bool> False",
  "<tuple> (1, 0)", so both the type and the value are compared;
- anything else as "<type>" with the type's qualified name, e.g.
  "<mod_wsgi.Input>".

The body is read fully from wsgi.input (as the app would: read() until it
returns b"") and reported beside the environ as its length and SHA-256.

The same JSON is the response body and, in pieces of at most 4000
characters (pure ASCII: non-ASCII and control characters are JSON escapes),
the headers X-Probe-0, X-Probe-1, ..., so a HEAD request (no body) shows its
environ too.
"""

import hashlib
import json


def _plain(value):
    if value is None or type(value) in (bool, int):
        return True
    return type(value) is tuple and all(_plain(v) for v in value)


def _describe(value):
    if isinstance(value, str):
        return value
    kind = type(value)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    if _plain(value):
        return f"<{name}> {value!r}"
    return f"<{name}>"


def application(environ, start_response):
    stream = environ["wsgi.input"]
    digest, length = hashlib.sha256(), 0
    while True:
        block = stream.read(65536)
        if not block:
            break
        digest.update(block)
        length += len(block)
    out = {
        "environ": {key: _describe(value) for key, value in environ.items()},
        "body": {"length": length, "sha256": digest.hexdigest()},
    }
    data = json.dumps(out, sort_keys=True, indent=1).encode()
    compact = json.dumps(out, sort_keys=True, ensure_ascii=True)
    pieces = [(f"X-Probe-{i}", compact[at : at + 4000]) for i, at in enumerate(range(0, len(compact), 4000))]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))] + pieces)
    return [data]
