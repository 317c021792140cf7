# ---------------------------------------------------------------- network by capability
"""Outbound client connections, made by the host (issue 17).

WASI preview 1 has no connect() and the guest's `_socket` cannot make a
socket, so the bridge gives the standard `socket`, `select`, `selectors` and
`ssl` modules pure-Python sockets whose I/O is calls into the host, which
makes every connection itself after checking the group's `[[connect]]`
grants. Unchanged client drivers (requests/urllib3, httpx, http.client,
smtplib, pg8000, PyMySQL, redis-py) then work as on any host; a server
cannot run (bind to a port, listen, accept are refused), nor UDP.

The host calls are the net_* functions of the built-in module `_wasgi`
(python-wasm/wasgi/_wasgimodule.c; their contract is NET_CALLS in
host/src/sandbox/net.rs): a connection is a host handle; timeouts are
milliseconds (-1: no limit, 0: never wait); failures are OSError with the
guest's errno values.

TLS is OpenSSL in the guest (ssl.SSLObject over two memory BIOs), pumped
over such a socket: certificates are checked in the guest, against the CA
file the host names (SSL_CERT_FILE).

Without grants (or on an interpreter without the net_* calls) the same
socket class is installed over a backend that refuses every connection with
an OSError saying how to grant one.
"""

import errno
from time import monotonic as _monotonic

# The host's net_poll bits.
_NET_IN, _NET_OUT, _NET_ERR, _NET_HUP, _NET_NVAL = 1, 2, 4, 8, 16
# net_recv_into's flag for MSG_PEEK; net_close's `how` for a full close.
_NET_PEEK, _NET_CLOSE = 1, 3
# recv() reads into a buffer the socket keeps, up to this size.
_SCRATCH = 64 * 1024
# Sockets' fileno() values start here: above any WASI descriptor, so a
# select() or poll() that mixes files and sockets can tell them apart.
_FILENO_BASE = 1 << 20

NO_NETWORK = (
    "the wasgi sandbox has no network: grant outbound connections with"
    ' [[connect]] to = "HOST:PORT" in the group\'s policy (or wasgi run --connect HOST:PORT)'
)
NETWORK_NEEDS_313 = (
    "the wasgi sandbox has no network here: connect grants need the cpython-3.13"
    " interpreter (this one has no host calls for connections)"
)
SERVERS_REFUSED = "wasgi: servers cannot run in the sandbox: only outbound client connections are possible"

# The host calls (`_wasgi`, or a _NoNetwork), the socket module and the
# state shared by all sockets; set by _install_sockets.
_net = None
_sm = None
# MSG_* flags as plain ints: socket.MsgFlag's `&` runs enum.Flag's Python
# code (1.5 µs a test in the guest).
_MSG_DONTWAIT = _MSG_PEEK = 0
_network_installed = False
_next_fileno = _FILENO_BASE
_by_fileno = None      # fileno -> socket (weak values): what select and poll look up
_handle_refs = {}      # host handle -> how many socket objects share it (dup)
# The handle of a connection the app opened while it was imported for a
# snapshot: released before the snapshot (a connection cannot be copied into
# every instance, and its number would name another connection there).
_LOST = -2
LOST_AT_SNAPSHOT = (
    "wasgi: this connection was opened while the app was imported for the snapshot, and"
    " connections do not survive it: every instance starts without them (open them per"
    " request or lazily; with SQLAlchemy, pool_pre_ping=True reconnects)"
)
_detached = {}         # fileno -> (handle, connecting) given up by detach()


class _NoNetwork:
    """The host calls of a sandbox without network: every one fails with
    ENETUNREACH and a message saying how to grant a connection."""

    def __init__(self, message):
        self.message = message

    def _refuse(self, *args):
        raise OSError(errno.ENETUNREACH, self.message)

    def net_resolve(self, name):
        # Even a host without network knows its loopback name (/etc/hosts):
        # `app.run(host="localhost")` then fails where it binds, as a server.
        if name.lower() == b"localhost":
            return b"127.0.0.1\n"
        self._refuse()

    net_connect = net_send = net_recv_into = net_poll = net_close = net_name = _refuse


def _constants(sm):
    """The constants drivers use that WASI's headers lack (Linux values,
    none colliding with the ones the guest has): setsockopt and getaddrinfo
    take them, and only this module reads them."""
    for name, value in (
        ("AF_UNSPEC", 0), ("AF_UNIX", 1), ("SOCK_RAW", 3), ("SOCK_NONBLOCK", 0o4000), ("SOCK_CLOEXEC", 0o2000000),
        ("SOL_SOCKET", 1), ("SO_REUSEADDR", 2), ("SO_TYPE", 3), ("SO_ERROR", 4), ("SO_BROADCAST", 6),
        ("SO_SNDBUF", 7), ("SO_RCVBUF", 8), ("SO_KEEPALIVE", 9), ("SO_LINGER", 13), ("SO_REUSEPORT", 15),
        ("SO_RCVTIMEO", 20), ("SO_SNDTIMEO", 21),
        ("IPPROTO_IP", 0), ("IPPROTO_TCP", 6), ("IPPROTO_UDP", 17), ("IPPROTO_IPV6", 41), ("SOL_TCP", 6),
        ("TCP_NODELAY", 1), ("TCP_MAXSEG", 2), ("TCP_KEEPIDLE", 4), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 6),
        ("TCP_USER_TIMEOUT", 18), ("IPV6_V6ONLY", 26),
        ("MSG_PEEK", 2), ("MSG_WAITALL", 0x100), ("MSG_DONTWAIT", 0x40), ("MSG_NOSIGNAL", 0x4000),
        ("SHUT_RD", 0), ("SHUT_WR", 1), ("SHUT_RDWR", 2), ("SOMAXCONN", 4096),
        ("AI_PASSIVE", 1), ("AI_CANONNAME", 2), ("AI_NUMERICHOST", 4), ("AI_V4MAPPED", 8), ("AI_ALL", 0x10),
        ("AI_ADDRCONFIG", 0x20), ("AI_NUMERICSERV", 0x400),
        ("NI_NUMERICHOST", 1), ("NI_NUMERICSERV", 2), ("NI_NOFQDN", 4), ("NI_NAMEREQD", 8), ("NI_DGRAM", 16),
        ("EAI_BADFLAGS", -1), ("EAI_NONAME", -2), ("EAI_AGAIN", -3), ("EAI_FAIL", -4), ("EAI_NODATA", -5),
        ("EAI_FAMILY", -6), ("EAI_SOCKTYPE", -7), ("EAI_SERVICE", -8), ("EAI_ADDRFAMILY", -9),
        ("INADDR_ANY", 0), ("INADDR_LOOPBACK", 0x7F000001),
    ):
        if hasattr(sm, name):
            continue
        # WASI's values are not Linux's (AF_INET is 1): a fallback must not
        # equal another constant of its kind.
        prefix = name.split("_")[0] + "_"
        taken = {v for k, v in vars(sm).items() if k.startswith(prefix) and isinstance(v, int)}
        while value in taken:
            value += 1000 if value >= 0 else -1000
        setattr(sm, name, value)


def _ms(seconds):
    """A timeout in seconds (None: none) as the host's milliseconds."""
    if seconds is None:
        return -1
    if seconds <= 0:
        return 0
    return max(1, int(seconds * 1000 + 0.999))


def _left(deadline):
    """Milliseconds until `deadline` (time.monotonic(); None: no limit)."""
    if deadline is None:
        return -1
    return max(0, int((deadline - _monotonic()) * 1000 + 0.999))


def _timed_out(message="timed out"):
    return _sm.timeout(message)


def _describe(family, address):
    """ADDR:PORT, [ADDR6]:PORT or unix:/path, for messages."""
    if isinstance(address, bytes):
        return address.decode("utf-8", "replace")
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_name(family, text):
    """net_name's b"IP PORT" or b"unix:/path" as the family's address."""
    text = text.decode("utf-8", "surrogateescape")
    if text.startswith("unix:"):
        return text[5:]
    host, _, port = text.rpartition(" ")
    if family == _sm.AF_INET6:
        return (host, int(port), 0, 0)
    return (host, int(port))


def _unbound_name(family):
    if family == _sm.AF_INET6:
        return ("::", 0, 0, 0)
    if family == _sm.AF_INET:
        return ("0.0.0.0", 0)
    return ""


def _is_server_address(family, address):
    """Binding `address` makes a server: a port (or a Unix path). Binding
    port 0 is what clients do (a source address, urllib3's IPv6 probe)."""
    if family in (_sm.AF_INET, _sm.AF_INET6) and isinstance(address, tuple) and len(address) >= 2:
        return address[1] not in (0, None)
    return True


class _Socket:
    """socket.socket for the sandbox: a client stream whose connection is a
    host handle. Installed as `socket.socket` (named `socket`); CPython's
    semantics: blocking, non-blocking (BlockingIOError) or a timeout per
    operation (socket.timeout), makefile(), dup(), detach()."""

    _scratch = None  # recv()'s buffer, made at the first recv

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        global _next_fileno
        sm = _sm
        self._handle = None
        self._connecting = False
        self._options = {}
        self._io_refs = 0
        self._closed = False
        if fileno is not None:
            if fileno not in _detached:
                raise OSError(errno.EBADF, f"wasgi: fd {fileno} is not a socket the sandbox made (only a detach()ed one can be adopted)")
            self._handle, self._connecting = _detached.pop(fileno)
            self._fileno = fileno
        else:
            self._fileno = _next_fileno
            _next_fileno += 1
        if family == -1:
            family = sm.AF_INET
        if type == -1:
            type = sm.SOCK_STREAM
        if proto == -1:
            proto = 0
        nonblocking = bool(type & sm.SOCK_NONBLOCK)
        type &= ~(sm.SOCK_NONBLOCK | sm.SOCK_CLOEXEC)
        if family not in (sm.AF_INET, sm.AF_INET6, sm.AF_UNIX):
            raise OSError(errno.EAFNOSUPPORT, f"wasgi: address family {family} is not available in the sandbox")
        if type != sm.SOCK_STREAM:
            if type == getattr(sm, "SOCK_DGRAM", None):
                raise OSError(errno.EPROTONOSUPPORT, "wasgi: UDP is not available in the sandbox")
            raise OSError(errno.EPROTONOSUPPORT, f"wasgi: socket type {type} is not available in the sandbox")
        self._family, self._type, self._proto = int(family), int(type), int(proto)
        self._timeout = 0.0 if nonblocking else sm.getdefaulttimeout()
        _by_fileno[self._fileno] = self

    # -- what it is

    @property
    def family(self):
        return _sm._intenum_converter(self._family, _sm.AddressFamily)

    @property
    def type(self):
        return _sm._intenum_converter(self._type, _sm.SocketKind)

    @property
    def proto(self):
        return self._proto

    @property
    def timeout(self):
        return self._timeout

    def fileno(self):
        return -1 if self._fileno is None else self._fileno

    def __repr__(self):
        closed = self._fileno is None
        s = "<%s.%s%s fd=%i, family=%s, type=%s, proto=%i" % (
            self.__class__.__module__, self.__class__.__qualname__, " [closed]" if closed else "",
            self.fileno(), self.family, self.type, self.proto)
        if not closed and self._handle is not None:
            try:
                s += ", laddr=%s" % (self.getsockname(),)
                s += ", raddr=%s" % (self.getpeername(),)
            except OSError:
                pass
        return s + ">"

    def __getstate__(self):
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    def __enter__(self):
        return self

    def __exit__(self, *args):
        if not self._closed:
            self.close()

    # -- timeouts

    def settimeout(self, value):
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def getblocking(self):
        return self._timeout != 0.0

    # -- the host calls, with CPython's errors

    def _live(self):
        if self._fileno is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self._handle == _LOST:
            raise ConnectionResetError(errno.ECONNRESET, LOST_AT_SNAPSHOT)
        if self._handle is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._handle

    def _ms_for(self, flags=0):
        return 0 if flags and flags & _MSG_DONTWAIT else _ms(self._timeout)

    def _host(self, call, *args, ms):
        try:
            return call(*args)
        except OSError as e:
            if e.errno == errno.ETIMEDOUT and ms > 0:
                raise _timed_out() from None
            raise

    # -- connecting

    def _targets(self, address):
        """(host address bytes, port) to try, in order, for `address`."""
        sm = _sm
        if self._family == sm.AF_UNIX:
            path = address.encode("utf-8", "surrogateescape") if isinstance(address, str) else bytes(__import__("os").fsencode(address))
            return [(b"unix:" + path, 0)]
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError(f"{'AF_INET6' if self._family == sm.AF_INET6 else 'AF_INET'} address must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise OverflowError("connect(): port must be 0-65535.")
        infos = getaddrinfo(host, port, self._family, sm.SOCK_STREAM)
        return [(info[4][0].encode(), port) for info in infos]

    def connect(self, address):
        self._connect(address)

    def connect_ex(self, address):
        try:
            self._connect(address)
        except _sm.gaierror:
            raise
        except TimeoutError as e:
            return e.errno or errno.EAGAIN
        except OSError as e:
            return e.errno
        return 0

    def _connect(self, address):
        if self._fileno is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self._handle is not None:
            state = self._state()
            if state == errno.EAGAIN:
                raise OSError(errno.EALREADY, "Operation already in progress")
            if state:
                raise OSError(state, __import__("os").strerror(state))
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        ms = _ms(self._timeout)
        targets = self._targets(address)
        error = None
        for addr, port in targets[:1] if ms == 0 else targets:
            try:
                self._handle = _net.net_connect(addr, port, ms)
            except OSError as e:
                error = _connect_error(e, addr, port, ms)
                continue
            _handle_refs[self._handle] = 1
            if ms == 0:
                # The host returns at once; the connection finishes (or
                # fails) later, and poll reports it writable then.
                state = self._state()
                if state == errno.EAGAIN:
                    self._connecting = True
                    raise BlockingIOError(errno.EINPROGRESS, "Operation now in progress")
                if state:
                    self._forget_handle()
                    raise OSError(state, __import__("os").strerror(state))
            return
        raise error

    def _state(self):
        """0 once connected, EAGAIN while connecting, else the connection's error."""
        if self._handle is None:
            return 0
        if self._handle == _LOST:
            return errno.ECONNRESET
        try:
            _net.net_recv_into(self._handle, bytearray(0), 0, 0, 0)
        except OSError as e:
            return e.errno
        self._connecting = False
        return 0

    # -- sending and receiving

    def send(self, data, flags=0):
        handle = self._live()
        ms = self._ms_for(flags)
        return self._host(_net.net_send, handle, data, ms, ms=ms)

    def sendall(self, data, flags=0):
        handle = self._live()
        with memoryview(data) as view, view.cast("B") as data:
            if self._timeout is None or self._timeout == 0 or (flags and flags & _MSG_DONTWAIT):
                ms = self._ms_for(flags)
                while data:
                    n = self._host(_net.net_send, handle, data, ms, ms=ms)
                    data = data[n:]
                return None
            # The timeout bounds the whole call, as in CPython.
            deadline = _monotonic() + self._timeout
            while data:
                ms = _left(deadline)
                if ms == 0:
                    raise _timed_out()
                n = self._host(_net.net_send, handle, data, ms, ms=ms)
                data = data[n:]
        return None

    def sendto(self, data, flags_or_address, address=None):
        raise OSError(errno.EISCONN if self._handle is not None else errno.EOPNOTSUPP,
                      "wasgi: sendto() needs UDP, which is not available in the sandbox")

    def sendfile(self, file, offset=0, count=None):
        return self._sendfile_use_send(file, offset, count)

    def recv_into(self, buffer, nbytes=0, flags=0):
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        handle = self._live()
        with memoryview(buffer) as view:
            if nbytes == 0:
                nbytes = view.nbytes
            if nbytes > view.nbytes:
                raise ValueError("buffer too small for requested bytes")
            if nbytes == 0:
                return 0  # an empty buffer asks the host for the state
            ms = self._ms_for(flags)
            peek = _NET_PEEK if flags and flags & _MSG_PEEK else 0
            return self._host(_net.net_recv_into, handle, view, nbytes, peek, ms, ms=ms)

    def recv(self, bufsize, flags=0):
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if bufsize == 0:
            return b""
        # Drivers ask for 64 KiB and get a few bytes: a buffer kept by the
        # socket saves zeroing 64 KiB at every call; only what came is copied.
        scratch = self._scratch
        if scratch is None or len(scratch) < min(bufsize, _SCRATCH):
            scratch = self._scratch = bytearray(min(bufsize, _SCRATCH))
        if bufsize > len(scratch):
            buffer = bytearray(bufsize)
            return bytes(buffer[:self.recv_into(buffer, bufsize, flags)])
        with memoryview(scratch) as view:
            return bytes(view[:self.recv_into(view, bufsize, flags)])

    def recvfrom(self, bufsize, flags=0):
        # As on Linux for a connected stream: no address.
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self.recv_into(buffer, nbytes, flags), None

    # -- names and options

    def getpeername(self):
        handle = self._live()
        return _parse_name(self._family, _net.net_name(handle, True))

    def getsockname(self):
        if self._fileno is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self._handle is None:
            return _unbound_name(self._family)
        return _parse_name(self._family, _net.net_name(self._handle, False))

    def setsockopt(self, level, optname, value, optlen=None):
        # Accepted and remembered: the host owns the real socket (TCP_NODELAY,
        # keepalive and buffer sizes are its business).
        self._options[(level, optname)] = value

    def getsockopt(self, level, optname, buflen=None):
        sm = _sm
        if level == sm.SOL_SOCKET and optname == sm.SO_ERROR:
            state = self._state()
            value = 0 if state == errno.EAGAIN else state
        elif level == sm.SOL_SOCKET and optname == sm.SO_TYPE:
            value = self._type
        elif level == sm.SOL_SOCKET and optname == getattr(sm, "SO_DOMAIN", None):
            value = self._family
        elif level == sm.SOL_SOCKET and optname == getattr(sm, "SO_PROTOCOL", None):
            value = self._proto
        else:
            value = self._options.get((level, optname), 0)
        if buflen is None:
            return value if isinstance(value, int) else int.from_bytes(bytes(value)[:4].ljust(4, b"\0"), "little")
        raw = value.to_bytes(4, "little", signed=True) if isinstance(value, int) else bytes(value)
        return raw[:buflen].ljust(buflen, b"\0")

    # -- what a server does

    def bind(self, address):
        if _is_server_address(self._family, address):
            raise OSError(errno.EOPNOTSUPP, SERVERS_REFUSED)
        # Port 0: a client choosing its source address; the host chooses.

    def listen(self, backlog=0):
        raise OSError(errno.EOPNOTSUPP, SERVERS_REFUSED)

    def accept(self):
        raise OSError(errno.EOPNOTSUPP, SERVERS_REFUSED)

    # -- closing

    def shutdown(self, how):
        sm = _sm
        hows = {sm.SHUT_RD: 0, sm.SHUT_WR: 1, sm.SHUT_RDWR: 2}
        if how not in hows:
            raise OSError(errno.EINVAL, "Invalid argument")
        _net.net_close(self._live(), hows[how])

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def close(self):
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self):
        if self._fileno is not None:
            _by_fileno.pop(self._fileno, None)
            self._fileno = None
        self._forget_handle()

    def _forget_handle(self):
        handle, self._handle = self._handle, None
        if handle is None or handle == _LOST:
            return
        refs = _handle_refs.pop(handle, 1) - 1
        if refs > 0:
            _handle_refs[handle] = refs
            return
        try:
            _net.net_close(handle, _NET_CLOSE)
        except OSError:
            pass

    def detach(self):
        """The fileno, with the connection kept for socket(fileno=...)."""
        self._closed = True
        fileno = self.fileno()
        if self._fileno is not None:
            _by_fileno.pop(self._fileno, None)
            if self._handle is not None:
                _detached[self._fileno] = (self._handle, self._connecting)
            self._fileno = None
            self._handle = None
        return fileno

    def __del__(self):
        try:
            if self._fileno is not None:
                self._real_close()
        except Exception:
            pass

    def dup(self):
        handle = self._handle
        sock = self.__class__.__new__(self.__class__)
        _Socket.__init__(sock, self._family, self._type, self._proto)
        if handle is not None:
            sock._handle, sock._connecting = handle, self._connecting
            _handle_refs[handle] = _handle_refs.get(handle, 1) + 1
        sock._options = dict(self._options)
        sock.settimeout(self.gettimeout())
        return sock

    def _readable_now(self):
        """True when a read would not wait for the host (TLS: decrypted or
        whole records buffered in the guest)."""
        return False


def _connect_error(e, addr, port, ms):
    """The error of a failed net_connect, said the way the app needs it."""
    where = _describe(None, addr if port == 0 else (addr.decode(), port))
    if e.errno == errno.EACCES:
        return PermissionError(
            errno.EACCES,
            f"wasgi: connection to {where} refused by the sandbox: no [[connect]] grant allows it"
            " (the server log names the group and the line that would)")
    if e.errno == errno.EMFILE:
        return OSError(errno.EMFILE, f"wasgi: connection to {where} refused: the group's max_connections are all open")
    if e.errno == errno.ETIMEDOUT and ms > 0:
        return _timed_out()
    return e


# ---------------------------------------------------------------- names


_SERVICES = {
    "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "www": 80, "pop3": 110,
    "nntp": 119, "imap": 143, "imap2": 143, "ldap": 389, "https": 443, "smtps": 465, "submissions": 465,
    "submission": 587, "ldaps": 636, "imaps": 993, "pop3s": 995, "mysql": 3306, "postgresql": 5432,
    "amqp": 5672, "redis": 6379, "http-alt": 8080, "memcache": 11211, "mongodb": 27017,
}


def _ip(text):
    """(family, normalised text) when `text` is an IP literal, else None."""
    import ipaddress

    scope = ""
    if "%" in text:
        text, scope = text.split("%", 1)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 4:
        return _sm.AF_INET, str(ip)
    return _sm.AF_INET6, str(ip)


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """socket.getaddrinfo: IP literals answered here, names by the host,
    which resolves only the names the group's grants allow."""
    sm = _sm
    if isinstance(port, bytes):
        port = port.decode()
    if port is None:
        port = 0
    elif isinstance(port, str):
        if port.isdigit():
            port = int(port)
        elif flags & sm.AI_NUMERICSERV or port not in _SERVICES:
            raise sm.gaierror(sm.EAI_SERVICE, "Servname not supported for ai_socktype")
        else:
            port = _SERVICES[port]
    elif not isinstance(port, int):
        raise OSError("Int or String expected")
    if family not in (sm.AF_UNSPEC, sm.AF_INET, sm.AF_INET6):
        raise sm.gaierror(sm.EAI_FAMILY, "ai_family not supported")
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if host is None or host == "":
        if host is None and port == 0:
            raise sm.gaierror(sm.EAI_NONAME, "Name or service not known")
        passive = flags & sm.AI_PASSIVE
        addresses = [(sm.AF_INET6, "::" if passive else "::1"), (sm.AF_INET, "0.0.0.0" if passive else "127.0.0.1")]
        if host == "":
            addresses = [(sm.AF_INET, "0.0.0.0")]
    else:
        literal = _ip(host)
        if literal is not None:
            addresses = [literal]
            if family and literal[0] != family:
                raise sm.gaierror(sm.EAI_ADDRFAMILY, "Address family for hostname not supported")
        elif flags & sm.AI_NUMERICHOST:
            raise sm.gaierror(sm.EAI_NONAME, "Name or service not known")
        else:
            addresses = [a for a in (_ip(line) for line in _resolve(host)) if a]
    addresses = [a for a in addresses if not family or a[0] == family]
    if not addresses:
        raise sm.gaierror(sm.EAI_NONAME, "Name or service not known")
    kinds = [(sm.SOCK_STREAM, sm.IPPROTO_TCP)]
    if type == getattr(sm, "SOCK_DGRAM", None):
        kinds = [(type, sm.IPPROTO_UDP)]
    elif type == 0 and hasattr(sm, "SOCK_DGRAM"):
        kinds.append((sm.SOCK_DGRAM, sm.IPPROTO_UDP))
    elif type not in (0, sm.SOCK_STREAM):
        raise sm.gaierror(sm.EAI_SOCKTYPE, "ai_socktype not supported")
    canon = host if flags & sm.AI_CANONNAME and host else ""
    result = []
    for af, text in addresses:
        sockaddr = (text, port, 0, 0) if af == sm.AF_INET6 else (text, port)
        for kind, kind_proto in kinds:
            if proto and proto != kind_proto:
                continue
            result.append((sm._intenum_converter(af, sm.AddressFamily), sm._intenum_converter(kind, sm.SocketKind),
                           kind_proto, canon, sockaddr))
            canon = ""
    return result


def _resolve(host):
    """The host's answer for a name: its addresses, as text. The guest's own
    host name is answered here, as /etc/hosts answers it on a host:
    smtplib and others look it up just to name themselves."""
    if host.lower() == _sm.gethostname().lower() and host.lower() != "localhost":
        return ["127.0.0.1"]
    try:
        name = host.encode("idna") if not host.isascii() else host.encode()
    except UnicodeError:
        raise _sm.gaierror(_sm.EAI_NONAME, "Name or service not known") from None
    try:
        answer = _net.net_resolve(name)
    except OSError as e:
        if e.errno == errno.EACCES:
            raise PermissionError(
                errno.EACCES,
                f"wasgi: no [[connect]] grant allows the name {host!r} (see the server log)") from None
        if e.errno == errno.ENOENT:
            raise _sm.gaierror(_sm.EAI_NONAME, "Name or service not known") from None
        if e.errno in (errno.EAGAIN, errno.ETIMEDOUT):
            raise _sm.gaierror(_sm.EAI_AGAIN, "Temporary failure in name resolution") from None
        raise
    return answer.decode().split()


def gethostbyname(hostname):
    return getaddrinfo(hostname, 0, _sm.AF_INET, _sm.SOCK_STREAM)[0][4][0]


def gethostbyname_ex(hostname):
    infos = getaddrinfo(hostname, 0, _sm.AF_INET, _sm.SOCK_STREAM)
    return hostname, [], [info[4][0] for info in infos]


def gethostbyaddr(ip_address):
    # No reverse lookups: getfqdn() then answers with the name it was given.
    raise _sm.herror(1, "Unknown host")


def getnameinfo(sockaddr, flags):
    sm = _sm
    if flags & sm.NI_NAMEREQD:
        raise sm.gaierror(sm.EAI_NONAME, "Name or service not known")
    host, port = sockaddr[0], sockaddr[1]
    literal = _ip(host)
    if literal is None:
        literal = (None, getaddrinfo(host, port)[0][4][0])
    return literal[1], str(port)


def socketpair(family=None, type=None, proto=0):
    raise OSError(errno.EOPNOTSUPP, "wasgi: socketpair() is not available in the sandbox")


def fromfd(fd, family, type, proto=0):
    if fd in _detached:
        return _sm.socket(family, type, proto, fileno=fd)
    raise OSError(errno.EBADF, "wasgi: socket.fromfd(): the sandbox has no socket file descriptors")


# ---------------------------------------------------------------- select


def _poll_sockets(wanted, ms):
    """{fileno: net_poll bits} for `wanted`, {fileno: bits asked}; files are
    always ready, and the host waits at most `ms` for the sockets."""
    import struct

    ready, entries, order = {}, bytearray(), []
    for fd, bits in wanted.items():
        sock = _by_fileno.get(fd)
        if sock is None:
            ready[fd] = _NET_NVAL if fd >= _FILENO_BASE else bits & (_NET_IN | _NET_OUT)
        elif sock._handle is None or sock._handle == _LOST:
            ready[fd] = _NET_HUP
        elif bits & _NET_IN and sock._readable_now():
            ready[fd] = _NET_IN
        else:
            entries += struct.pack("<iHH", sock._handle, bits & (_NET_IN | _NET_OUT), 0)
            order.append(fd)
    if ready:
        ms = 0
    if order:
        _net.net_poll(entries, ms)
        for i, fd in enumerate(order):
            revents = struct.unpack_from("<H", entries, i * 8 + 6)[0]
            if revents:
                ready[fd] = revents
    elif not ready and ms != 0:
        import time

        # Nothing to wait for but the time (select([], [], [], t) sleeps).
        if ms < 0:
            raise OSError(errno.EINVAL, "wasgi: poll() with nothing to wait for would wait forever")
        time.sleep(ms / 1000)
    return ready


def _fd_of(obj):
    fd = obj if isinstance(obj, int) else obj.fileno()
    if not isinstance(fd, int):
        raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def select(rlist, wlist, xlist, timeout=None):
    """select.select over the sandbox's sockets (and files, always ready)."""
    if timeout is not None:
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    wanted = {}
    for objects, bits in ((rlist, _NET_IN), (wlist, _NET_OUT), (xlist, 0)):
        for obj in objects:
            fd = _fd_of(obj)
            wanted[fd] = wanted.get(fd, 0) | bits
    ready = _poll_sockets(wanted, _ms(timeout))
    for fd, bits in ready.items():
        if bits & _NET_NVAL:
            raise OSError(errno.EBADF, "Bad file descriptor")
    trouble = _NET_ERR | _NET_HUP
    return ([o for o in rlist if ready.get(_fd_of(o), 0) & (_NET_IN | trouble)],
            [o for o in wlist if ready.get(_fd_of(o), 0) & (_NET_OUT | _NET_ERR)],
            [o for o in xlist if ready.get(_fd_of(o), 0) & _NET_ERR])


class _Poll:
    """select.poll over the sandbox's sockets (and files, always ready)."""

    def __init__(self):
        self._fds = {}

    def register(self, fd, eventmask=None):
        sel = _select_module
        self._fds[_fd_of(fd)] = (sel.POLLIN | sel.POLLPRI | sel.POLLOUT) if eventmask is None else eventmask

    def modify(self, fd, eventmask):
        fd = _fd_of(fd)
        if fd not in self._fds:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        self._fds[fd] = eventmask

    def unregister(self, fd):
        del self._fds[_fd_of(fd)]

    def poll(self, timeout=None):
        sel = _select_module
        if timeout is None or timeout < 0:
            ms = -1
        else:
            ms = int(timeout) if timeout == int(timeout) else int(timeout) + 1
        wanted = {fd: (_NET_IN if mask & sel.POLLIN else 0) | (_NET_OUT if mask & sel.POLLOUT else 0)
                  for fd, mask in self._fds.items()}
        ready = _poll_sockets(wanted, ms)
        result = []
        for fd, bits in ready.items():
            mask = self._fds[fd]
            revents = ((sel.POLLIN if bits & _NET_IN and mask & sel.POLLIN else 0)
                       | (sel.POLLOUT if bits & _NET_OUT and mask & sel.POLLOUT else 0)
                       | (sel.POLLERR if bits & _NET_ERR else 0)
                       | (sel.POLLHUP if bits & _NET_HUP else 0)
                       | (sel.POLLNVAL if bits & _NET_NVAL else 0))
            if revents:
                result.append((fd, revents))
        return result


_select_module = None


def _patch_selectors(selectors):
    """PollSelector bound select.poll when the class was made; and the
    default must be it, not epoll/kqueue, which know nothing of the sockets."""
    poll_selector = getattr(selectors, "PollSelector", None)
    if poll_selector is None:

        class PollSelector(selectors._PollLikeSelector):
            """Poll-based selector."""

            _selector_cls = _Poll
            _EVENT_READ = _select_module.POLLIN
            _EVENT_WRITE = _select_module.POLLOUT

        PollSelector.__module__ = "selectors"
        selectors.PollSelector = poll_selector = PollSelector
    poll_selector._selector_cls = _Poll
    selectors.DefaultSelector = poll_selector


# ---------------------------------------------------------------- TLS


class _TLSSocket(_Socket):
    """ssl.SSLSocket for the sandbox: ssl.SSLObject over two memory BIOs,
    its records carried by the socket underneath; CPython's SSLSocket
    semantics (timeouts, non-blocking SSLWantRead/WriteError, ragged EOFs,
    unwrap, makefile)."""

    def __init__(self, *args, **kwargs):
        raise TypeError(
            f"{self.__class__.__name__} does not have a public constructor. "
            "Instances are returned by SSLContext.wrap_socket().")

    @classmethod
    def _create(cls, sock, server_side=False, do_handshake_on_connect=True, suppress_ragged_eofs=True,
                server_hostname=None, context=None, session=None):
        ssl = sys.modules["ssl"]
        if not isinstance(sock, _Socket):
            raise TypeError(f"wasgi: wrap_socket() needs a socket of the sandbox, not {type(sock).__name__}")
        if sock.getsockopt(_sm.SOL_SOCKET, _sm.SO_TYPE) != _sm.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        timeout = sock.gettimeout()
        family, type, proto = sock._family, sock._type, sock._proto
        self = cls.__new__(cls)
        _Socket.__init__(self, family, type, proto, fileno=sock.detach())
        self._timeout = timeout
        self._context = context
        self._session = session
        self._sslobj = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._raw_in = bytearray()     # received, not yet whole records
        self._raw_out = b""            # to send (non-blocking: what did not go)
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self._connected = self._handle is not None and not self._connecting
        if self._connected:
            try:
                self._sslobj = self._wrap()
                if do_handshake_on_connect:
                    if timeout == 0.0:
                        raise ValueError("do_handshake_on_connect should not be specified for non-blocking sockets")
                    self.do_handshake()
            except (OSError, ValueError):
                self.close()
                raise
        return self

    def _wrap(self):
        return self._context.wrap_bio(self._incoming, self._outgoing, self.server_side,
                                      self.server_hostname, self._session)

    @property
    def context(self):
        return self._context

    @context.setter
    def context(self, ctx):
        self._context = ctx
        if self._sslobj is not None:
            self._sslobj.context = ctx

    @property
    def session(self):
        return self._sslobj.session if self._sslobj is not None else self._session

    @session.setter
    def session(self, session):
        self._session = session
        if self._sslobj is not None:
            self._sslobj.session = session

    @property
    def session_reused(self):
        return self._sslobj.session_reused if self._sslobj is not None else None

    def dup(self):
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")

    def _checkClosed(self, msg=None):
        pass

    def _check_connected(self):
        if not self._connected:
            self.getpeername()
            # Wrapped while a non-blocking connect was under way: done now.
            if self._state() == 0:
                self._connected = True
                if self._sslobj is None:
                    self._sslobj = self._wrap()

    # -- the pump: records between the BIOs and the host

    def _pump(self, what, op, *args):
        """op(*args) on the SSLObject, moving records until it is done:
        blocking, within the socket's timeout (for the whole operation, as
        _ssl.c), or raising SSLWantRead/WriteError when non-blocking."""
        ssl = sys.modules["ssl"]
        deadline = None if not self._timeout else _monotonic() + self._timeout
        if self._raw_out and not self._flush(deadline, what):
            raise ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete (write)")
        while True:
            try:
                result = op(*args)
            except ssl.SSLWantReadError:
                if not self._flush(deadline, what):
                    raise ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete (write)") from None
                if not self._fill(deadline, what):
                    raise
                continue
            except ssl.SSLError:
                try:
                    self._flush(deadline, what)  # the alert, for the peer
                except OSError:
                    pass
                raise
            self._flush(deadline, what)
            return result

    def _flush(self, deadline, what):
        """Sends what the SSLObject wrote; False when non-blocking and some stayed."""
        data = self._raw_out + self._outgoing.read()
        self._raw_out = b""
        while data:
            ms = 0 if self._timeout == 0.0 else _left(deadline)
            if ms == 0 and self._timeout != 0.0:
                self._raw_out = data
                raise _timed_out(f"The {what} operation timed out")
            try:
                n = _net.net_send(self._live(), data, ms)
            except BlockingIOError:
                self._raw_out = data
                return False
            except OSError as e:
                if e.errno == errno.ETIMEDOUT and ms > 0:
                    raise _timed_out(f"The {what} operation timed out") from None
                raise
            data = data[n:]
        return True

    def _fill(self, deadline, what):
        """Receives until a whole record (or the end) is in the incoming
        BIO; False when non-blocking and none came."""
        ssl = sys.modules["ssl"]
        if self._incoming.eof or getattr(self, "_raw_eof", False):
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        buffer = bytearray(65536)
        while True:
            ms = 0 if self._timeout == 0.0 else _left(deadline)
            if ms == 0 and self._timeout != 0.0:
                raise _timed_out(f"The {what} operation timed out")
            try:
                n = _net.net_recv_into(self._live(), buffer, len(buffer), 0, ms)
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno == errno.ETIMEDOUT and ms > 0:
                    raise _timed_out(f"The {what} operation timed out") from None
                raise
            if n == 0:
                self._incoming.write(bytes(self._raw_in))
                self._raw_in.clear()
                self._incoming.write_eof()
                self._raw_eof = True
                return True
            self._raw_in += memoryview(buffer)[:n]
            if self._feed():
                return True

    def _feed(self):
        """Moves the whole records of _raw_in to the incoming BIO. Whole
        records only, so that poll() can say a read will not wait (one that
        is not a record goes as it is: OpenSSL then says what is wrong)."""
        raw, end = self._raw_in, 0
        while len(raw) - end >= 5:
            kind, major, length = raw[end], raw[end + 1], int.from_bytes(raw[end + 3:end + 5], "big")
            if not 20 <= kind <= 24 or major != 3 or length > 18432:
                end = len(raw)
                break
            if len(raw) - end < 5 + length:
                break
            end += 5 + length
        if end:
            self._incoming.write(bytes(raw[:end]))
            del raw[:end]
        return end > 0

    def _readable_now(self):
        return self._sslobj is not None and (
            self._sslobj.pending() > 0 or self._incoming.pending > 0 or getattr(self, "_raw_eof", False))

    # -- SSLSocket's API

    def read(self, len=1024, buffer=None):
        ssl = sys.modules["ssl"]
        if self._sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            if buffer is not None:
                return self._pump("read", self._sslobj.read, len, buffer)
            return self._pump("read", self._sslobj.read, len)
        except ssl.SSLError as x:
            if x.args[0] == ssl.SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data):
        if self._sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        return self._pump("write", self._sslobj.write, data)

    def getpeercert(self, binary_form=False):
        self._check_connected()
        if self._sslobj is None:
            raise ValueError("handshake not done yet")
        return self._sslobj.getpeercert(binary_form)

    def selected_npn_protocol(self):
        return None

    def selected_alpn_protocol(self):
        return self._sslobj.selected_alpn_protocol() if self._sslobj is not None else None

    def cipher(self):
        return self._sslobj.cipher() if self._sslobj is not None else None

    def shared_ciphers(self):
        return self._sslobj.shared_ciphers() if self._sslobj is not None else None

    def compression(self):
        return self._sslobj.compression() if self._sslobj is not None else None

    def version(self):
        return self._sslobj.version() if self._sslobj is not None else None

    def get_channel_binding(self, cb_type="tls-unique"):
        if self._sslobj is None:
            return None
        return self._sslobj.get_channel_binding(cb_type)

    def verify_client_post_handshake(self):
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        return self._sslobj.verify_client_post_handshake()

    def get_verified_chain(self):
        return self._sslobj.get_verified_chain() if self._sslobj is not None else None

    def get_unverified_chain(self):
        return self._sslobj.get_unverified_chain() if self._sslobj is not None else None

    def pending(self):
        return self._sslobj.pending() if self._sslobj is not None else 0

    def send(self, data, flags=0):
        if self._sslobj is None:
            return super().send(data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def sendall(self, data, flags=0):
        if self._sslobj is None:
            return super().sendall(data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        with memoryview(data) as view, view.cast("B") as byte_view:
            count, amount = 0, len(byte_view)
            while count < amount:
                count += self.send(byte_view[count:])

    def sendto(self, data, flags_or_addr, addr=None):
        if self._sslobj is not None:
            raise ValueError(f"sendto not allowed on instances of {self.__class__}")
        return super().sendto(data, flags_or_addr, addr)

    def recv(self, buflen=1024, flags=0):
        if self._sslobj is None:
            return super().recv(buflen, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {self.__class__}")
        return self.read(buflen)

    def recv_into(self, buffer, nbytes=None, flags=0):
        if buffer is not None and nbytes is None:
            nbytes = len(buffer)
        elif nbytes is None:
            nbytes = 1024
        if self._sslobj is None:
            return super().recv_into(buffer, nbytes, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to recv_into() on {self.__class__}")
        return self.read(nbytes, buffer)

    def recvfrom(self, buflen=1024, flags=0):
        if self._sslobj is not None:
            raise ValueError(f"recvfrom not allowed on instances of {self.__class__}")
        return super().recvfrom(buflen, flags)

    def recvfrom_into(self, buffer, nbytes=None, flags=0):
        if self._sslobj is not None:
            raise ValueError(f"recvfrom_into not allowed on instances of {self.__class__}")
        return super().recvfrom_into(buffer, nbytes or 0, flags)

    def shutdown(self, how):
        self._sslobj = None
        super().shutdown(how)

    def unwrap(self):
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        self._pump("read", self._sslobj.unwrap)
        self._sslobj = None
        # Records that came after the peer's close_notify are plain data now.
        leftover = self._incoming.read() + bytes(self._raw_in)
        if leftover:
            raise OSError(errno.EPROTO, "wasgi: data after the TLS close_notify cannot be read as plain text")
        return self

    def do_handshake(self, block=False):
        self._check_connected()
        timeout = self.gettimeout()
        try:
            if timeout == 0.0 and block:
                self.settimeout(None)
            self._pump("handshake", self._sslobj.do_handshake)
        finally:
            self.settimeout(timeout)

    def _real_connect(self, addr, connect_ex):
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self._wrap()
        try:
            if connect_ex:
                rc = _Socket.connect_ex(self, addr)
            else:
                rc = None
                _Socket.connect(self, addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    def connect(self, addr):
        self._real_connect(addr, False)

    def connect_ex(self, addr):
        return self._real_connect(addr, True)

    def _real_close(self):
        self._sslobj = None
        super()._real_close()


def _patch_ssl(ssl):
    """ssl's sockets are the sandbox's: wrap_socket makes a _TLSSocket."""
    _TLSSocket.__name__ = _TLSSocket.__qualname__ = "SSLSocket"
    _TLSSocket.__module__ = "ssl"
    ssl.SSLSocket = _TLSSocket
    ssl.SSLContext.sslsocket_class = _TLSSocket
    ssl.socket = _sm.socket


# ---------------------------------------------------------------- install


def _drop_connections_for_snapshot():
    """Before the snapshot: releases every connection the import opened, so
    that no instance inherits a handle the host does not hold for it. The
    sockets stay, reset: a driver sees a connection the peer closed and
    opens another. Returns their peers, for the log."""
    dropped = []
    for sock in list(_by_fileno.values()) if _by_fileno else []:
        if sock._handle is None or sock._handle == _LOST:
            continue
        try:
            dropped.append(_net.net_name(sock._handle, True).decode(errors="replace").replace(" ", ":"))
        except OSError:
            dropped.append("?")
        sock._forget_handle()
        sock._handle = _LOST
    for handle, _ in _detached.values():
        try:
            _net.net_close(handle, _NET_CLOSE)
        except OSError:
            pass
    _detached.clear()
    return dropped


def _install_sockets(net):
    """socket.socket and the name functions of `socket` over `net`."""
    global _net, _sm, _by_fileno
    import socket
    import weakref

    global _MSG_DONTWAIT, _MSG_PEEK
    _net, _sm = net, socket
    if _by_fileno is None:
        _by_fileno = weakref.WeakValueDictionary()
    _constants(socket)
    _MSG_DONTWAIT, _MSG_PEEK = int(socket.MSG_DONTWAIT), int(socket.MSG_PEEK)
    if not hasattr(socket, "getdefaulttimeout"):
        socket.getdefaulttimeout = lambda: None
    if not hasattr(socket, "_intenum_converter"):
        socket._intenum_converter = lambda value, enum_klass: value
    original = socket.socket
    _Socket.__name__ = _Socket.__qualname__ = "socket"
    _Socket.__module__ = "socket"
    _Socket.__doc__ = original.__doc__
    # CPython's own makefile() and sendfile() fallback: they need only
    # send, recv_into, _io_refs, _closed and _decref_socketios.
    _Socket.makefile = original.makefile
    _Socket._sendfile_use_send = original._sendfile_use_send
    _Socket._check_sendfile_params = original._check_sendfile_params
    socket.socket = _Socket
    for function in (getaddrinfo, gethostbyname, gethostbyname_ex, gethostbyaddr, getnameinfo, socketpair, fromfd):
        function.__module__ = "socket"
        setattr(socket, function.__name__, function)


def _install_network(network, net=None):
    """Outbound connections through the host: socket, select, selectors
    and ssl, patched in place (`net`: the host calls, `_wasgi` by default)."""
    global _network_installed, _select_module
    import select as select_module

    if net is None:
        import _wasgi as net
    if network.get("ca_file"):
        # OpenSSL reads it in set_default_verify_paths (create_default_context).
        os.environ.setdefault("SSL_CERT_FILE", network["ca_file"])
    _install_sockets(net)
    _sm.has_ipv6 = True
    _select_module = select_module
    for name, value in (("POLLIN", 1), ("POLLPRI", 2), ("POLLOUT", 4), ("POLLERR", 8), ("POLLHUP", 16),
                        ("POLLNVAL", 32), ("POLLRDNORM", 64), ("POLLWRNORM", 256)):
        if not hasattr(select_module, name):
            setattr(select_module, name, value)
    select.__module__ = "select"
    select_module.select = select
    select_module.poll = _Poll
    for name in ("epoll", "kqueue", "devpoll"):
        # Their descriptors would be the host's, knowing nothing of these sockets.
        if hasattr(select_module, name):
            delattr(select_module, name)
    _after_import("selectors", _patch_selectors)
    _after_import("ssl", _patch_ssl)
    _network_installed = True
