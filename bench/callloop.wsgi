# bench/callloop.py served by wasgi, so the in-guest call loop also runs in
# wasgi's own engine: GET /?app=flask|django&n=N&rounds=R answers callloop's
# JSON line (500 with the error if the app cannot be imported or answers
# wrongly). Serve with --python-path for bench, examples/hello and its
# packages, and Django's packages.
import json

from urllib.parse import parse_qs

import callloop


def application(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        result = callloop.measure(q.get("app", ["flask"])[0], int(q.get("n", ["1000"])[0]),
                                  int(q.get("rounds", ["3"])[0]))
    except Exception as e:  # the reason goes to the benchmark's table
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [f"{type(e).__name__}: {e}\n".encode()]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode() + b"\n"]
