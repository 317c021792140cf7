"""Imported by two groups at once, each for its snapshot: each leaves a mark
in its own directory and waits for one in the other's (both are granted to
both groups).
The imports finish only if both groups build their snapshots at the same
time; if one waits for the other's build, the import gives up and says so."""
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.dirname(HERE)
ME = os.path.basename(HERE)
PEER = "b" if ME == "a" else "a"

with open(os.path.join(HERE, "importing"), "w") as mark:
    mark.write("1")
deadline = time.monotonic() + 45
while not os.path.exists(os.path.join(SHARED, PEER, "importing")):
    if time.monotonic() > deadline:
        raise RuntimeError(f"group {PEER} did not import while group {ME} did: snapshot builds ran one at a time")
    time.sleep(0.05)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"group {ME}\n".encode()]
