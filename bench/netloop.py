"""Round-trip loops for bench/network: the same code in native CPython and in the guest.

    python netloop.py KIND N ROUNDS HOST PORT [PATH:PATH...]

KIND is one of
  redis      N x `r.get(key)` with redis-py (the key holds VALUE; bench/network sets it)
  redis-raw  N x `PING` written to a plain socket and `+PONG` read back
             with recv(65536) as redis-py reads: the same round trip without
             the driver (the transport alone)
  redis-raw-small  the same, read with recv_into a 64-byte buffer
  redis-canread  N x redis-py's check before each command that no reply is
             left unread (Connection.can_read: a recv that finds nothing)
  pg         N x `con.run("SELECT 1")` with pg8000.native (user wasgi,
             database postgres, no password: the bench cluster trusts 127.0.0.1)
  pg-raw     N x a simple-query message `SELECT 1` on a plain socket, read
             until ReadyForQuery: the same round trip without the driver
  hostcall   (the guest only) N x a host call that does no I/O: `_wasgi`'s
             net_recv_into with an empty buffer, which only asks the host
             for a connection's state (what the socket shim's _state() does)

Prints one JSON line: the kind, N, the best and every round's microseconds
per iteration, the interpreter's version and platform, the driver's version,
and in the guest the socket shim's host calls per iteration (counted after
the timed loops).
bench/netloop.wsgi serves `measure` in the guest (GET /?kind=...&n=...).
The answer of the first and of every round's last iteration is checked: a
broken connection must not give a fast figure. The directories of the
fourth argument go first on sys.path (not PYTHONPATH: some interpreters run
isolated from the environment).
"""

import json
import socket
import struct
import sys
import time

KEY = "bench:network"
VALUE = b"wasgi bench value 0123456789"
PG_USER, PG_DATABASE = "wasgi", "postgres"


def _version(dist):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 -- only shown in the results
        return None


def _nodelay(s):
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def _redis(host, port):
    import redis

    r = redis.Redis(host=host, port=port, db=0, socket_timeout=30)

    def once():
        return r.get(KEY)

    def ok(answer):
        return answer == VALUE

    return once, ok, r.close, {"redis": _version("redis")}


def _redis_can_read(host, port):
    """What redis-py does before each command (ConnectionPool.get_connection):
    a Connection's can_read(), a recv that finds nothing (EAGAIN) because
    the socket's timeout is set to 0 for it."""
    import redis

    r = redis.Redis(host=host, port=port, db=0, socket_timeout=30)
    conn = r.connection_pool.get_connection("GET")

    def once():
        return conn.can_read()

    def ok(answer):
        return answer is False

    def close():
        r.connection_pool.release(conn)
        r.close()

    return once, ok, close, {"redis": _version("redis")}


def _redis_raw(host, port):
    """PING and +PONG; read as redis-py reads, with recv(65536)."""
    s = socket.create_connection((host, port), timeout=30)
    _nodelay(s)

    def once():
        s.sendall(b"PING\r\n")
        data = s.recv(65536)
        while not data.endswith(b"\r\n"):  # never split in practice, but be correct
            data += s.recv(65536)
        return data

    def ok(answer):
        return answer == b"+PONG\r\n"

    return once, ok, s.close, {}


def _redis_raw_small(host, port):
    """The same, read into a 64-byte buffer (recv_into): no large buffer made per read."""
    s = socket.create_connection((host, port), timeout=30)
    _nodelay(s)
    buf = bytearray(64)

    def once():
        s.sendall(b"PING\r\n")
        n = s.recv_into(buf)
        while not buf[:n].endswith(b"\r\n"):
            n += s.recv_into(memoryview(buf)[n:])
        return bytes(buf[:n])

    def ok(answer):
        return answer == b"+PONG\r\n"

    return once, ok, s.close, {}


def _pg(host, port):
    import pg8000.native

    con = pg8000.native.Connection(user=PG_USER, host=host, port=port, database=PG_DATABASE, timeout=30)

    def once():
        return con.run("SELECT 1")

    def ok(answer):
        return answer == [[1]]

    return once, ok, con.close, {"pg8000": _version("pg8000")}


class _PgWire:
    """The PostgreSQL protocol, as little of it as a trusted login and a
    simple query need."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=30)
        _nodelay(self.s)
        self.buf = bytearray()
        self.chunk = bytearray(8192)
        params = b"user\0" + PG_USER.encode() + b"\0database\0" + PG_DATABASE.encode() + b"\0\0"
        self.s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        for kind, body in self.until_ready():
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise RuntimeError("the server wants a password (the bench cluster should trust 127.0.0.1)")
            if kind == b"E":
                raise RuntimeError(f"login refused: {bytes(body)!r}")

    def messages(self):
        """Complete messages at the front of the buffer, removed from it."""
        out, i, buf = [], 0, self.buf
        while len(buf) - i >= 5:
            length = struct.unpack_from("!i", buf, i + 1)[0]
            if len(buf) - i < 1 + length:
                break
            out.append((bytes(buf[i:i + 1]), bytes(buf[i + 5:i + 1 + length])))
            i += 1 + length
        del buf[:i]
        return out

    def until_ready(self):
        got = []
        while True:
            got += self.messages()
            if got and got[-1][0] == b"Z":
                return got
            n = self.s.recv_into(self.chunk)
            if n == 0:
                raise ConnectionError("the server closed the connection")
            self.buf += self.chunk[:n]

    def query(self, sql):
        q = sql.encode() + b"\0"
        self.s.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
        return self.until_ready()



def _pg_raw(host, port):
    wire = _PgWire(host, port)

    def once():
        return wire.query("SELECT 1")

    def ok(answer):
        kinds = [k for k, _ in answer]
        return kinds == [b"T", b"D", b"C", b"Z"] and answer[1][1].endswith(b"1")

    def close():
        wire.s.sendall(b"X\0\0\0\4")
        wire.s.close()

    return once, ok, close, {}


def _hostcall(host, port):
    import _wasgi  # the guest's host calls: only inside wasgi

    s = socket.create_connection((host, port), timeout=30)
    handle = s._handle  # the shim's host handle
    empty = bytearray(0)
    call = _wasgi.net_recv_into

    def once():
        return call(handle, empty, 0, 0, 0)

    def ok(answer):
        return answer == 0

    return once, ok, s.close, {}


def count_host_calls(once, iters):
    """In the guest: the socket shim's host calls (net_send, net_recv_into,
    net_poll, ...) per iteration, counted over `iters` more iterations by
    putting a counting proxy in front of the shim's `_net`; None natively."""
    bridge = sys.modules.get("wasgi_bridge")
    net = getattr(bridge, "_net", None)
    if net is None:
        return None
    counts = {}

    class Counting:
        def __getattr__(self, name):
            f = getattr(net, name)
            if not name.startswith("net_"):
                return f

            def call(*args):
                counts[name] = counts.get(name, 0) + 1
                return f(*args)
            return call

    bridge._net = Counting()
    try:
        for _ in range(iters):
            once()
    finally:
        bridge._net = net
    return {k: v / iters for k, v in sorted(counts.items())}


KINDS = {"redis": _redis, "redis-raw": _redis_raw, "redis-raw-small": _redis_raw_small,
         "redis-canread": _redis_can_read, "pg": _pg, "pg-raw": _pg_raw, "hostcall": _hostcall}


def measure(kind, n, rounds, host, port):
    """Connects, checks one answer, warms up, then times `rounds` loops of n
    round trips; µs per iteration, the best and every round's."""
    once, ok, close, versions = KINDS[kind](host, int(port))
    try:
        answer = once()
        if not ok(answer):
            raise RuntimeError(f"unexpected answer to the first {kind} round trip: {answer!r}")
        for _ in range(min(n, 500)):  # warm up
            once()
        per_iter = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(n - 1):
                once()
            answer = once()
            per_iter.append((time.perf_counter() - started) / n * 1e6)
            if not ok(answer):
                raise RuntimeError(f"unexpected answer to a {kind} round trip: {answer!r}")
        host_calls = count_host_calls(once, min(n, 200))
    finally:
        close()
    return {
        "kind": kind,
        "n": n,
        "us_per_iter": min(per_iter),
        "us_per_iter_rounds": per_iter,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "versions": versions,
        "host_calls_per_iter": host_calls,
    }


def main():
    kind, n, rounds, host, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    if len(sys.argv) > 6:
        sys.path[:0] = sys.argv[6].split(":")
    try:
        print(json.dumps(measure(kind, n, rounds, host, port)))
    except (RuntimeError, OSError, ImportError) as e:
        sys.exit(f"netloop {kind}: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
