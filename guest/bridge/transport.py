# ---------------------------------------------------------------- the transport
#
# One object, chosen once at start (choose_transport), carries the frames:
#   transport.send(*frames)    frames are (kind, payload) tuples, payload bytes-like
#   transport.read_frame()     the host's next (kind, payload); SystemExit(0) when the
#                              host closed the channel (it is shutting this instance down)
#   transport.log(level, msg)  a log record; level is one of 'error', 'warn', 'info'
#   transport.name             how the frames travel, told to the host when ready
# `transport` below is set once, before the app is loaded. A request's code
# (Input, Response, handle) is given its transport instead of reading that
# global, so the warm-up hands it one of its own and nothing is rebound.

_END_FRAME = (K_END, b"")


def _log_bytes(message):
    """A log record's text as UTF-8, cut to what the host keeps."""
    data = message.encode("utf-8", "backslashreplace")
    if len(data) > MAX_LOG_RECORD:
        cut = len(data) - (MAX_LOG_RECORD - 96)
        data = data[:MAX_LOG_RECORD - 96] + (
            f" [... {cut} more bytes dropped: a log record is at most {MAX_LOG_RECORD} bytes]").encode()
    return data


class Transport:
    """How frames travel between the bridge and the host."""

    name = "?"

    def send(self, *frames):
        raise NotImplementedError

    def read_frame(self):
        raise NotImplementedError

    def log(self, level, message):
        raise NotImplementedError


class HostCallTransport(Transport):
    """wasgi's own build: the built-in module `_wasgi`, whose functions are
    calls into the host (host/src/sandbox/hostcalls.rs)."""

    name = "host calls"
    _LEVELS = {"error": 0, "warn": 1, "info": 2}

    def __init__(self, wasgi):
        self._send, self._recv, self._log = wasgi.send, wasgi.recv, wasgi.log

    def send(self, *frames):
        wasgi_send = self._send
        for kind, payload in frames:
            wasgi_send(kind, payload)

    def read_frame(self):
        got = self._recv()
        if got is None:
            raise SystemExit(0)
        return got

    def log(self, level, message):
        self._log(self._LEVELS.get(level, 2), _log_bytes(message))


class StdioTransport(Transport):
    """The pinned 3.12 build: frames on stdin and stdout, each as the kind, a
    4-byte big-endian payload length and the payload."""

    name = "stdio"

    def __init__(self):
        self._pack_header = __import__("struct").Struct(">cI").pack
        self._stdin = open(0, "rb", buffering=READ_CHUNK + 16, closefd=False)

    def send(self, *frames):
        pack_header = self._pack_header
        parts = []
        for kind, payload in frames:
            parts.append(pack_header(kind, len(payload)))
            parts.append(payload)
        _write_all(_OUT_FD, b"".join(parts))

    def read_frame(self):
        head = self._stdin.read(5)
        if len(head) < 5:
            raise SystemExit(0)
        n = int.from_bytes(head[1:5], "big")
        payload = self._stdin.read(n) if n else b""
        if len(payload) != n:
            raise SystemExit(0)
        return head[:1], payload

    def log(self, level, message):
        self.send((K_LOG, level.encode() + b"\0" + _log_bytes(message)))


def choose_transport(config):
    """Host calls when this interpreter has `_wasgi`, unless the host asks
    for stdio (WASGI_FRAMES=stdio, to compare the two)."""
    try:
        import _wasgi
    except ImportError:
        _wasgi = None
    if _wasgi is not None and config.get("frames") != "stdio":
        return HostCallTransport(_wasgi)
    return StdioTransport()


# The instance's transport, set by main() before anything else runs.
transport = None
