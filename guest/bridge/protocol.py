"""wasgi bridge: runs inside the sandbox, between the host and the WSGI app.

The host starts CPython (WASI) with the bridge's text as an argument. The
bridge loads the user's script the way mod_wsgi does (init), tells the host
it is ready, then loops forever (serve): read a request frame, call the app,
send status, headers and body frames. Nothing the app prints can reach the
frames: sys.stdout and sys.stderr are rebound to the log (fd 2).

The bridge is the files of guest/bridge/, joined at build time, in the order
host/src/sandbox/bridge.rs lists them, into one module, `wasgi_bridge`:
  protocol.py   (this file) frame kinds, limits shared with the host, errors
  transport.py  the one object that carries frames: host calls or stdio
  logstream.py  sys.stdout, sys.stderr and wsgi.errors, sent to the log
  guestenv.py   what the sandbox lacks, made to look as an app expects: no
                network, one virtual user and host, one thread
  netsock.py    outbound client sockets (socket, select, ssl) over host calls
  loader.py     loading the script, and explaining why it failed
  wsgi.py       one request: wsgi.input, start_response, the body frames
  snapshot.py   what a snapshot needs: files read at import, warm-up
  main.py       start (init, main) and the request loop (serve)
Each file uses the names the others define as module globals; at import
time, only those of the files before it.

Frames (see host/src/protocol/frames.rs, the other half of this contract) are a kind
byte and a payload. They travel one of two ways, chosen once at start:
  host calls  wasgi's own build has the built-in module `_wasgi`, whose
              functions are calls into the host (host/src/sandbox/hostcalls.rs):
              no encoding, and stdin/stdout carry no frames at all
  stdio       otherwise (the pinned 3.12 build): on stdin and stdout, each
              frame as the kind, a 4-byte big-endian payload length, the payload
Only the serve loop reads frames; init may send (startup failure) and log.

  host -> guest   Q request environ   B body bytes (empty: end)   Z body error
                  K continue          C cancel (client gone)
  guest -> host   A ready             X startup failed (message)  L log record
                  S status+headers    D body bytes                E end
                  F failed after the response started             R read body
                  P imported for a snapshot (JSON: files read, open fds)
"""

import os
import sys

# Frame kinds, as bytes for cheap comparison.
K_REQUEST, K_BODY, K_BODY_ERROR, K_CONTINUE, K_CANCEL = b"Q", b"B", b"Z", b"K", b"C"
K_READY, K_STARTUP_FAILED, K_LOG, K_START, K_DATA, K_END, K_FAILED, K_READ, K_PREPARED = (
    b"A", b"X", b"L", b"S", b"D", b"E", b"F", b"R", b"P")
K_IDENTITY = b"I"

# Flow control: after this much unacknowledged body data the bridge waits for
# the host's K (continue) or C (cancel). The host applies the same rule.
ACK_BYTES = 256 * 1024
ACK_FRAMES = 16
# Largest body slice asked of the host at once.
READ_CHUNK = 64 * 1024
# Largest D frame; larger app chunks are split.
MAX_DATA = 256 * 1024
# The host's limits on a response head (host/src/pool/exchange.rs): checked here
# too, so the app's start_response raises and its traceback says where.
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
# The host keeps at most this much of one log record (host/src/sandbox/stdio.rs);
# longer ones are cut here, before they are copied out.
MAX_LOG_RECORD = 16 * 1024

_OUT_FD = 1
_LOG_FD = 2


class ProtocolError(Exception):
    """The host sent something the bridge cannot follow; the instance ends."""


class ClientGone(Exception):
    """The host cancelled the response: the client disconnected."""


class RequestBodyError(OSError):
    """wsgi.input could not be read: the client's doing (a malformed or
    stalled body, one over max_body_bytes), not the app's."""


def _from_request_body(e):
    """True if `e` is, or was raised while handling, a RequestBodyError."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, RequestBodyError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _write_all(fd, data):
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            view = view[os.write(fd, view):]
