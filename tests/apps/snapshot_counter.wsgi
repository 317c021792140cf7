"""Counts its own imports in imports.log next to it (its directory is granted
read-write), so a test can tell an instance started from a snapshot from one
that imported the app. Reads greeting.txt at import, as apps read settings."""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "imports.log"), "a") as log:
    log.write("imported\n")
with open(os.path.join(HERE, "greeting.txt")) as f:
    GREETING = f.read().strip()
VERSION = "version 1"
HITS = {"n": 0}


def application(environ, start_response):
    HITS["n"] += 1
    if environ["PATH_INFO"] == "/random":
        body = repr(random.random())
    elif environ["PATH_INFO"] == "/big":
        # Past the flow-control window: a warm-up of it must not wait for the host.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"b" * (4 << 20)]
    elif environ["PATH_INFO"] == "/keep-open":
        body = "kept: " + KEPT.name if "KEPT" in globals() else "none"
    else:
        body = f"{VERSION} {GREETING} hits={HITS['n']}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


if os.path.exists(os.path.join(HERE, "keep-open")):
    KEPT = open(os.path.join(HERE, "keep-open"))


if os.path.exists(os.path.join(HERE, "many-modules")):
    # An absurd report of files read by the import (each module's __file__).
    import sys
    import types

    for i in range(25000):
        module = types.ModuleType(f"_fake_{i}")
        module.__file__ = f"{HERE}/fake/{i}.py"
        sys.modules[module.__name__] = module
