"""A tenant's app: says who it is and tries to read or write any path it is given."""

import os
from urllib.parse import parse_qs

TENANT = os.path.basename(os.path.dirname(__file__))


def application(environ, start_response):
    q = {k: v[-1] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    path = environ["PATH_INFO"]
    try:
        if path == "/read":
            with open(q["path"]) as f:
                body = f.read()
        elif path == "/write":
            with open(q["path"], "w") as f:
                f.write(f"written by {TENANT}")
            body = "written"
        elif path == "/list":
            body = "\n".join(sorted(os.listdir(q["path"])))
        else:
            body = f"{TENANT} at {environ['SCRIPT_NAME'] or '/'} (host {environ.get('HTTP_HOST')}, env APP_MODE={os.environ.get('APP_MODE')})"
        status = "200 OK"
    except OSError as e:
        body, status = f"{type(e).__name__}: {e}", "403 Forbidden"
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]
