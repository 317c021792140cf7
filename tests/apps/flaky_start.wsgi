"""Starts once; every later instance fails at import (to provoke the restart backoff).

The test copies this file into a writable directory, where the marker goes."""

import os

MARKER = os.path.join(os.path.dirname(__file__), "started")
if os.path.exists(MARKER):
    raise RuntimeError("refusing to start a second time")
open(MARKER, "w").close()


def application(environ, start_response):
    if environ["PATH_INFO"] == "/exit":
        os._exit(1)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"up"]
