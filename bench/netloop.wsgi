# bench/netloop.py served by wasgi, so bench/network's round-trip loops also
# run in the guest: GET /?kind=redis|redis-raw|pg|pg-raw|hostcall&n=N&rounds=R&host=H&port=P
# answers netloop's JSON line (500 with the error if a loop fails). Serve it
# with --python-path for bench/ and the drivers' packages, and --connect
# grants for the servers.
import json

from urllib.parse import parse_qs

import netloop


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        result = netloop.measure(q.get("kind", "redis"), int(q.get("n", "1000")), int(q.get("rounds", "3")),
                                 q.get("host", "127.0.0.1"), int(q["port"]))
    except Exception as e:  # the reason goes to the benchmark's table
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [f"{type(e).__name__}: {e}\n".encode()]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode() + b"\n"]
