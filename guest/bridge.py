"""wasgi bridge: runs inside the sandbox, between the host and the WSGI app.

The host starts CPython (WASI) with this file's text as an argument. The
bridge loads the user's script the way mod_wsgi does (init), tells the host
it is ready, then loops forever (serve): read a request frame, call the app,
send status, headers and body frames. Nothing the app prints can reach the
frames: sys.stdout and sys.stderr are rebound to the log (fd 2).

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


# ---------------------------------------------------------------- the transport
#
# Three functions, bound once at start (_choose_transport) to one of the two:
#   send(*frames)    frames are (kind, payload) tuples, payload bytes-like
#   read_frame()     the host's next (kind, payload); SystemExit(0) when the
#                    host closed the channel (it is shutting this instance down)
#   log(level, msg)  a log record; level is one of 'error', 'warn', 'info'

_END_FRAME = (K_END, b"")


def _log_bytes(message):
    """A log record's text as UTF-8, cut to what the host keeps."""
    data = message.encode("utf-8", "backslashreplace")
    if len(data) > MAX_LOG_RECORD:
        cut = len(data) - (MAX_LOG_RECORD - 96)
        data = data[:MAX_LOG_RECORD - 96] + (
            f" [... {cut} more bytes dropped: a log record is at most {MAX_LOG_RECORD} bytes]").encode()
    return data


def _use_host_calls(wasgi):
    global TRANSPORT, send, read_frame, log
    wasgi_send, wasgi_recv, wasgi_log = wasgi.send, wasgi.recv, wasgi.log
    levels = {"error": 0, "warn": 1, "info": 2}

    def send(*frames):
        for kind, payload in frames:
            wasgi_send(kind, payload)

    def read_frame():
        got = wasgi_recv()
        if got is None:
            raise SystemExit(0)
        return got

    def log(level, message):
        wasgi_log(levels.get(level, 2), _log_bytes(message))

    TRANSPORT = "host calls"


def _use_stdio():
    global TRANSPORT, send, read_frame, log
    pack_header = __import__("struct").Struct(">cI").pack
    stdin = open(0, "rb", buffering=READ_CHUNK + 16, closefd=False)

    def send(*frames):
        parts = []
        for kind, payload in frames:
            parts.append(pack_header(kind, len(payload)))
            parts.append(payload)
        _write_all(_OUT_FD, b"".join(parts))

    def read_frame():
        head = stdin.read(5)
        if len(head) < 5:
            raise SystemExit(0)
        n = int.from_bytes(head[1:5], "big")
        payload = stdin.read(n) if n else b""
        if len(payload) != n:
            raise SystemExit(0)
        return head[:1], payload

    def log(level, message):
        send((K_LOG, level.encode() + b"\0" + _log_bytes(message)))

    TRANSPORT = "stdio"


def _choose_transport(config):
    """Host calls when this interpreter has `_wasgi`, unless the host asks
    for stdio (WASGI_FRAMES=stdio, to compare the two)."""
    try:
        import _wasgi
    except ImportError:
        _wasgi = None
    if _wasgi is not None and config.get("frames") != "stdio":
        _use_host_calls(_wasgi)
    else:
        _use_stdio()


class LogStream:
    """Text stream that sends whole lines to the host log (fd 2).

    It stands in for sys.stdout, sys.stderr and wsgi.errors, so print() and
    logging output land in the log and never in a response."""

    encoding = "utf-8"
    errors = "backslashreplace"
    newlines = None
    closed = False

    def __init__(self, name):
        self.name = name
        self._partial = []

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if "\n" in s:
            head, _, rest = s.rpartition("\n")
            self._partial.append(head)
            self._partial.append("\n")
            text = "".join(self._partial)
            self._partial = [rest] if rest else []
            _write_all(_LOG_FD, text.encode("utf-8", "backslashreplace"))
        elif s:
            self._partial.append(s)
            if sum(map(len, self._partial)) > 8192:
                self.flush()
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._partial:
            text = "".join(self._partial) + "\n"
            self._partial = []
            _write_all(_LOG_FD, text.encode("utf-8", "backslashreplace"))

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def fileno(self):
        raise OSError(f"{self.name} is the wasgi log and has no file descriptor")

    @property
    def buffer(self):
        return _LogBuffer(self)


_stdout = LogStream("stdout")
_stderr = LogStream("stderr")


class RestrictedStdout(LogStream):
    """sys.stdout under restrict_stdout = true: any write raises, as under
    mod_wsgi's `WSGIRestrictStdout On`, so code that prints is found."""

    def write(self, s):
        raise OSError(
            "sys.stdout access restricted by wasgi (restrict_stdout = true, like mod_wsgi's "
            "WSGIRestrictStdout On): write to sys.stderr, environ['wsgi.errors'] or use logging, "
            "or set restrict_stdout = false to send print() to the log"
        )


class _LogBuffer:
    """Binary face of a LogStream (sys.stdout.buffer.write(b'...'))."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, b):
        self._stream.write(bytes(b).decode("utf-8", "backslashreplace"))
        return len(b)

    def flush(self):
        self._stream.flush()


# ---------------------------------------------------------------- loading the script


class ServerAtImport(BaseException):
    """Raised when the script tries to open a socket while it is imported."""


def _is_library_file(filename):
    """True for the stdlib and for installed distributions (a top-level
    package or module with a *.dist-info beside it), wherever they live."""
    if filename.startswith("<") or filename.startswith("/usr/local/lib/python"):
        return True
    if "/site-packages/" in filename or "/dist-packages/" in filename:
        return True
    import glob

    for entry in sys.path:
        if entry and filename.startswith(entry.rstrip("/") + "/"):
            top = filename[len(entry.rstrip("/")) + 1:].split("/", 1)[0]
            name = top[:-3] if top.endswith(".py") else top
            if glob.glob(os.path.join(glob.escape(entry), glob.escape(name) + "-*.dist-info")):
                return True
    return False


def _user_frames(tb_frames, script):
    """The app's own frames: those outside the stdlib, site-packages and the bridge."""
    return [f for f in tb_frames if f.filename == script or not _is_library_file(f.filename)]


def _no_network(*args, **kwargs):
    import errno

    raise OSError(errno.ENETUNREACH, "the wasgi sandbox has no network")


def _install_no_network():
    """Name lookups fail with OSError, as on a host without network.

    This WASI build has no getaddrinfo at all, so without this shim a client
    library would die with AttributeError instead of its usual network error."""
    import socket

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        try:
            getattr(socket, name)(*(("localhost", 80) if name in ("getaddrinfo", "getnameinfo") else ("localhost",)))
        except OSError:
            continue
        except Exception:
            setattr(socket, name, _no_network)


def _guard_sockets():
    """Until the script is imported, opening a socket means it starts a server."""
    import socket

    saved = {name: getattr(socket, name) for name in ("socket", "getaddrinfo")}

    def refuse(*args, **kwargs):
        import traceback

        raise ServerAtImport(traceback.extract_stack()[:-1])

    class NoServerAtImport(saved["socket"]):
        def __init__(self, *args, **kwargs):
            refuse()

    socket.socket = NoServerAtImport
    socket.getaddrinfo = refuse

    def restore():
        for name, value in saved.items():
            setattr(socket, name, value)

    return restore


def _install_host_facts(config):
    """Answers the questions an app asks about its host, from the config.

    WASI has no users, groups or host name: `os.getuid`, `pwd`, `grp` and
    `socket.gethostname` do not exist, and libraries ask them at import
    (pkg_resources, platformdirs, getpass, Celery). The guest gets one
    virtual user per process group, named by the group's `user` and `group`,
    whose home is the group's home, on a host named as configured."""
    facts = config.get("host_facts")
    if not facts:
        return
    import types
    from importlib.machinery import ModuleSpec

    user, group, home = facts["user"], facts["group"], facts["home"]
    uid, gid, hostname = facts["uid"], facts["gid"], facts["hostname"]
    for name, value in (("getuid", uid), ("geteuid", uid), ("getgid", gid), ("getegid", gid)):
        setattr(os, name, lambda value=value: value)
    os.getgroups = lambda: [gid]
    os.getlogin = lambda: user
    if hasattr(os, "uname"):
        # platform.node() and platform.uname() read the host name from here.
        uname = os.uname()
        os.uname = lambda: os.uname_result((uname.sysname, hostname, uname.release, uname.version, uname.machine))

    def module(name, doc, **functions):
        m = types.ModuleType(name, doc)
        m.__spec__ = ModuleSpec(name, None, origin="wasgi")
        for key, value in functions.items():
            value.__module__ = name
            setattr(m, key, value)
        sys.modules[name] = m
        return m

    passwd = _record("struct_passwd", "pw_name pw_passwd pw_uid pw_gid pw_gecos pw_dir pw_shell")
    entry = passwd((user, "x", uid, gid, user, home, "/sbin/nologin"))

    def getpwuid(wanted):
        if wanted == uid:
            return entry
        raise KeyError(f"getpwuid(): uid not found: {wanted}")

    def getpwnam(wanted):
        if wanted == user:
            return entry
        raise KeyError(f"getpwnam(): name not found: {wanted!r}")

    module("pwd", "The guest's one user (wasgi: the group's `user`).",
           struct_passwd=passwd, getpwuid=getpwuid, getpwnam=getpwnam, getpwall=lambda: [entry])

    struct_group = _record("struct_group", "gr_name gr_passwd gr_gid gr_mem")
    group_entry = struct_group((group, "x", gid, [user]))

    def getgrgid(wanted):
        if wanted == gid:
            return group_entry
        raise KeyError(f"getgrgid(): gid not found: {wanted}")

    def getgrnam(wanted):
        if wanted == group:
            return group_entry
        raise KeyError(f"getgrnam(): name not found: {wanted!r}")

    module("grp", "The guest's one group (wasgi: the group's `group`).",
           struct_group=struct_group, getgrgid=getgrgid, getgrnam=getgrnam, getgrall=lambda: [group_entry])

    import socket

    socket.gethostname = lambda: hostname


def _record(name, fields):
    """A tuple with named fields, like the structs of pwd and grp."""
    fields = fields.split()
    namespace = {"__slots__": (), "n_fields": len(fields), "n_sequence_fields": len(fields)}
    for i, field in enumerate(fields):
        namespace[field] = property(lambda self, i=i: self[i])
    namespace["__repr__"] = lambda self: f"{name}({', '.join(f'{f}={v!r}' for f, v in zip(fields, self))})"
    return type(name, (tuple,), namespace)


# ------------------------------------------------------------- one thread
#
# An instance is one thread: WASI has no threads, and no socketpair either.
# asyncio's selector loop makes a socketpair (its "self-pipe") only so that
# another thread or a signal handler can wake it; neither exists here, so
# the loop goes without. concurrent.futures.ThreadPoolExecutor (and asgiref's
# CurrentThreadExecutor) runs each task at submit(), in the caller's thread,
# as a worker would (that is what asyncio.to_thread, run_in_executor and
# asgiref's async_to_sync/sync_to_async need); a thread started by hand is
# refused with a RuntimeError (CPython's own type) that says why.

THREAD_REFUSED = (
    "can't start a new thread: the wasgi sandbox runs each instance of the app"
    " as a single thread, and threads cannot be started in it. Do the work in the"
    " request itself, raise the group's `instances` to serve requests at once, or"
    " hand long work to an external worker or queue (concurrent.futures."
    "ThreadPoolExecutor runs each task at submit(), in the request)."
)


def _install_one_thread():
    import _thread

    refused_at = set()

    def refuse(start):
        def start_thread(*args, **kwargs):
            try:
                return start(*args, **kwargs)
            except RuntimeError:
                pass
            where = _caller_outside("threading.py")
            if where not in refused_at and len(refused_at) < 100:
                refused_at.add(where)
                log("warn", f"a thread was refused at {where}: {THREAD_REFUSED}")
            raise RuntimeError(THREAD_REFUSED)

        start_thread.__name__ = start.__name__
        start_thread.__doc__ = start.__doc__
        return start_thread

    # threading binds these at its import; it may have been imported already.
    threading = sys.modules.get("threading")
    for name, threading_name in (("start_new_thread", "_start_new_thread"),
                                 ("start_new", None),
                                 ("start_joinable_thread", "_start_joinable_thread")):
        start = getattr(_thread, name, None)
        if start is None:
            continue
        setattr(_thread, name, refuse(start))
        if threading is not None and threading_name and getattr(threading, threading_name, None) is start:
            setattr(threading, threading_name, getattr(_thread, name))
    _after_import("asyncio", _asyncio_without_self_pipe)
    _after_import("concurrent.futures.thread", _thread_pool_inline)
    _after_import("asgiref.current_thread_executor", _asgiref_inline)


def _caller_outside(*library_files):
    """`file:line` of the innermost frame that is not in the bridge or in
    one of `library_files` (base names): where the app asked."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename != "<wasgi-bridge>" and os.path.basename(filename) not in library_files:
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _asyncio_without_self_pipe(asyncio):
    """The selector loop without its self-pipe; the default executor shut
    down in place (CPython starts a thread to join its workers)."""
    loop_class = asyncio.selector_events.BaseSelectorEventLoop

    def _make_self_pipe(self):
        # Nothing to wake the loop from: callbacks scheduled with
        # call_soon_threadsafe come from this thread, and the loop runs
        # them at its next turn.
        pass

    def _close_self_pipe(self):
        pass

    def _write_to_self(self):
        pass

    loop_class._make_self_pipe = _make_self_pipe
    loop_class._close_self_pipe = _close_self_pipe
    loop_class._write_to_self = _write_to_self

    async def shutdown_default_executor(self, timeout=None):
        self._executor_shutdown_called = True
        if self._default_executor is not None:
            self._default_executor.shutdown(wait=True)

    asyncio.base_events.BaseEventLoop.shutdown_default_executor = shutdown_default_executor


def _thread_pool_inline(thread):
    """ThreadPoolExecutor.submit runs the task there and then, as a worker
    thread would, and returns its done future."""
    executor_class = thread.ThreadPoolExecutor

    def submit(self, fn, /, *args, **kwargs):
        with self._shutdown_lock:
            if self._broken:
                raise thread.BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        return _run_as_worker(thread._base.Future(), fn, args, kwargs)

    submit.__doc__ = executor_class.submit.__doc__
    executor_class.submit = submit


def _asgiref_inline(module):
    """asgiref's CurrentThreadExecutor takes sync work (sync_to_async with
    thread_sensitive=True, the default: Django's ORM in an async view) back
    to the thread that called async_to_sync. Here that is the thread running
    the event loop (the pool ran it in place), so the work runs in place too."""
    executor_class = getattr(module, "CurrentThreadExecutor", None)
    if executor_class is None:
        return

    def submit(self, fn, /, *args, **kwargs):
        return _run_as_worker(module.Future(), fn, args, kwargs)

    run_until_future = executor_class.run_until_future

    def run_until_future_or_refuse(self, future):
        # Only async_to_sync inside sync_to_async (inside async_to_sync)
        # waits here for work on a loop that is paused below us: it would
        # wait forever.
        if _worker_depth and not future.done():
            raise RuntimeError(
                "async_to_sync() was called from sync code that runs under sync_to_async(): in"
                " the wasgi sandbox's single thread the outer event loop cannot run meanwhile."
                " Await the coroutine in the async caller instead.")
        return run_until_future(self, future)

    executor_class.submit = submit
    executor_class.run_until_future = run_until_future_or_refuse


def _run_as_worker(future, fn, args, kwargs):
    """Runs fn(*args, **kwargs) into `future` as a worker thread would: in a
    context of its own, and with no asyncio event loop running (the one in
    this thread is paused meanwhile, so the work may start a loop of its own,
    and Django's async-unsafe check sees what it would see in a thread)."""
    import contextvars

    global _worker_depth
    events = sys.modules.get("asyncio.events")
    running = events._get_running_loop() if events else None
    if running is not None:
        events._set_running_loop(None)
    future.set_running_or_notify_cancel()
    _worker_depth += 1
    try:
        result = contextvars.Context().run(fn, *args, **kwargs)
    except BaseException as e:
        future.set_exception(e)
    else:
        future.set_result(result)
    finally:
        _worker_depth -= 1
        if running is not None:
            events._set_running_loop(running)
    return future


# How many _run_as_worker calls are under way (nested) in this thread.
_worker_depth = 0


def _after_import(name, patch):
    """Calls patch(module) once the module `name` is imported (now, if it
    already is): the bridge does not pay for importing what the app never uses."""
    if name in sys.modules:
        patch(sys.modules[name])
        return
    finder = next((f for f in sys.meta_path if isinstance(f, _PatchAfterImport)), None)
    if finder is None:
        finder = _PatchAfterImport()
        sys.meta_path.insert(0, finder)
    finder.patches[name] = patch


class _PatchAfterImport:
    """A meta path finder for the modules the bridge patches: finds each with
    the finders after it, and patches the module once its own loader has
    executed it."""

    def __init__(self):
        self.patches = {}

    def find_spec(self, name, path=None, target=None):
        patch = self.patches.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


class _PatchingLoader:
    """The module's own loader, with the patch applied after exec_module."""

    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)


def _install_denial_explainer(config):
    """Explains, in the host log, why an open() was refused.

    The sandbox itself enforces the grants and the app sees the ordinary
    Python error; this only says why, once per path: a path outside every
    grant, a write to a read-only grant, or a symlink leaving its grant,
    naming the group, the policies in force and the grant that would allow it.
    It wraps open() and does its work only when an open fails, so it costs
    nothing on the paths that work."""
    grants = sorted(
        ((g["path"].rstrip("/") or "/", g["write"]) for g in config.get("grants", [])),
        key=lambda g: -len(g[0]),
    )
    group = config.get("group", "?")
    policies = config.get("policies", [])
    private_tmp = any(g["path"] == "/tmp" and "private /tmp" in g.get("origin", "") for g in config.get("grants", []))
    normpath = os.path.normpath
    explained = set()

    def grant_of(path):
        for root, write in grants:
            if path == root or path.startswith(root + "/") or root == "/":
                return root, write
        return None

    def symlink_escape(path):
        """The first symlink on `path` the sandbox will not follow, as
        (link, target, grant holding the link), or None."""
        current = ""
        for part in path.split("/")[1:]:
            current = f"{current}/{part}"
            if not os.path.islink(current):
                continue
            try:
                target = os.readlink(current)
            except OSError:
                # The sandbox will not even reveal an absolute link's target.
                return current, "an absolute path", (grant_of(current) or ("?",))[0]
            resolved = normpath(os.path.join(os.path.dirname(current), target))
            if os.path.isabs(target) or grant_of(resolved) is None:
                return current, target, (grant_of(current) or ("?",))[0]
            current = resolved
        return None

    def explain(path, writing=False):
        """Logs why opening `path` was refused; returns the explanation."""
        if not isinstance(path, str) or (path, writing) in explained or len(explained) > 1000:
            return ""
        path = normpath(os.path.join(os.getcwd(), path))
        if path.startswith("/usr/local/lib/python3"):
            return ""  # the interpreter's own standard library
        explained.add((path, writing))
        found = symlink_escape(path)
        if found:
            link, target, grant = found
            message = (
                f"{link} is a symlink to {target}, which the sandbox does not follow: a link may"
                f" only lead to a place inside the same grant ({grant}), by a relative path."
                f" Grant the real directory to group {group!r} and use it directly, or put it on"
                f" python_path instead of symlinking a module into place."
            )
        else:
            grant = grant_of(path)
            if grant is None:
                reason, access = "it is outside every directory this group may use", "write" if writing else "read"
            elif writing and not grant[1]:
                reason, access = f"{grant[0]} is granted read-only", "write"
            elif grant[0] == "/tmp" and private_tmp:
                # A host path under /tmp: inside the sandbox /tmp is the group's own.
                reason = (
                    "inside the sandbox /tmp is the group's private /tmp, so files under the host's /tmp"
                    " are not visible unless their directory is granted"
                )
                access = "write" if writing else "read"
            else:
                return ""  # an ordinary error (a missing file inside a grant)
            granted = ", ".join(f"{r} ({'write' if w else 'read'})" for r, w in reversed(grants)) or "none"
            message = (
                f"{reason}. Group {group!r}; policies in force: {', '.join(policies) or 'none'};"
                f" grants: {granted}. A grant that would allow it:\n[[grant]]\npath = {os.path.dirname(path)!r}\naccess = {access!r}"
            )
        log("warn", f"denied: {'writing' if writing else 'reading'} {path}: {message}")
        return message

    def ungranted(paths):
        """The entries of `paths` that no grant covers (the interpreter's own
        standard library aside): the sandbox cannot see into them. A host
        path under /tmp is one: the guest's /tmp is the group's private one."""
        hidden = []
        for p in paths:
            if not isinstance(p, str) or not p.startswith("/") or p.startswith("/usr/local/lib/python3"):
                continue
            grant = grant_of(normpath(p))
            if grant is None or (grant[0] == "/tmp" and private_tmp):
                hidden.append(p)
        return hidden

    global _explain_denial, _ungranted
    _explain_denial = explain
    _ungranted = ungranted

    import builtins
    import io

    real_open = builtins.open

    def open(file, mode="r", *args, **kwargs):
        try:
            return real_open(file, mode, *args, **kwargs)
        except OSError as e:
            if e.errno in _DENIED_ERRNOS:
                explain(file, isinstance(mode, str) and any(c in mode for c in "wax+"))
            raise

    open.__doc__ = real_open.__doc__
    builtins.open = io.open = open


# errno values a symlink escape can surface as inside the sandbox.
_DENIED_ERRNOS = {2, 44, 63, 76}  # WASI EACCES, ENOENT, EPERM, ENOTCAPABLE


def _explain_denial(path, writing=False):
    """Replaced by _install_denial_explainer; explains nothing before it runs."""
    return ""


def _ungranted(paths):
    """Replaced by _install_denial_explainer."""
    return []


# Ends a startup failure whose module may sit in a sys.path entry the group
# is not granted: JSON the host reads (it alone can look there) and strips.
_UNGRANTED_MARK = "\n\x1ewasgi-ungranted-sys-path "


def _native_extension_hint(module_name):
    """If `module_name` exists only as a native extension built for the host,
    say so: such files cannot load inside the sandbox."""
    import glob

    parts = module_name.split(".")
    for entry in sys.path:
        if not entry or entry.endswith(".zip"):
            continue
        pattern = os.path.join(glob.escape(entry), *map(glob.escape, parts[:-1]), glob.escape(parts[-1]) + ".*.so")
        found = glob.glob(pattern)
        if found:
            top = parts[0]
            return (
                f"\nHint: {module_name!r} is a native extension built for the host ({found[0]})."
                f" Native code cannot load inside the WebAssembly sandbox, and package {top!r}"
                f" has no pure-Python fallback for it. Use a pure-Python alternative or a version"
                f" of {top!r} that does not need it."
            )
    return ""


class StartupFailed(Exception):
    """The app cannot be loaded; the message is for a person."""


def _startup_failed(message):
    raise StartupFailed(message)


def load_application(script, callable_name):
    import importlib.machinery
    import importlib.util
    import hashlib
    import traceback

    # mod_wsgi loads the script under a unique name that is not __main__, so a
    # guarded `app.run()` never fires.
    module_name = "_wasgi_" + hashlib.sha256(script.encode()).hexdigest()[:16]
    loader = importlib.machinery.SourceFileLoader(module_name, script)
    spec = importlib.util.spec_from_file_location(module_name, script, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    restore_sockets = _guard_sockets()
    try:
        # Compiled from source at every start, never from a cached .pyc, so a
        # script edited twice within a second still loads its newest text.
        code = compile(spec.loader.get_data(script), script, "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except ServerAtImport as e:
        frames = _user_frames(e.args[0], script)
        where = frames[-1] if frames else None
        chain = "".join(
            f"\n  {f.filename}, line {f.lineno}: {(f.line or '').strip()}" for f in frames
        )
        place = f"{where.filename}:{where.lineno}" if where else script
        _startup_failed(
            f"{place}: the app tries to start a server while it is imported"
            f" (`{(where.line or '').strip() if where else 'app.run()'}`)."
            f" wasgi serves the app itself and the sandbox has no network: put that call"
            f" under `if __name__ == '__main__':` or move it to a separate run.py."
            + (f"\nCall chain:{chain}" if chain else "")
        )
    except SystemExit as e:
        tb = traceback.extract_tb(e.__traceback__)
        frames = _user_frames(tb, script)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else script
        _startup_failed(
            f"{where}: the script called sys.exit({e.code!r}) while it was imported"
            f" (mod_wsgi logs this as 'SystemExit ignored'). Usually an unguarded"
            f" `app.run()` or command-line code: put it under `if __name__ == '__main__':`."
        )
    except BaseException as e:
        text = "".join(traceback.format_exception(e))
        hint = ""
        failed_path = getattr(e, "filename", None) or getattr(e, "path", None)
        symlink = _explain_denial(failed_path) if failed_path else ""
        if not symlink and isinstance(e, ModuleNotFoundError) and e.name:
            # A module symlinked in from outside the grants is invisible to
            # the import system: look for the link itself.
            top = e.name.split(".")[0]
            for entry in sys.path:
                for candidate in (os.path.join(entry, top + ".py"), os.path.join(entry, top)):
                    if entry and not symlink and os.path.islink(candidate):
                        symlink = _explain_denial(candidate)
        if symlink:
            hint = f"\nHint: {symlink}"
        if hint:
            pass
        elif isinstance(e, ModuleNotFoundError) and e.name and _native_extension_hint(e.name):
            hint = _native_extension_hint(e.name)
        elif isinstance(e, ModuleNotFoundError) and e.name and e.name.split(".")[0] not in sys.modules and _ungranted(sys.path):
            # (Only when the top-level package itself is missing: a submodule
            # missing from a package that loaded is another problem.)
            hidden = _ungranted(sys.path)
            top = e.name.split(".")[0]
            hint = (
                f"\nHint: module {e.name!r} is not in the sys.path entries this group may read;"
                f" {', '.join(hidden)} {'is' if len(hidden) == 1 else 'are'} on sys.path but not granted,"
                f" so the sandbox cannot see into {'it' if len(hidden) == 1 else 'them'}. If {top!r} lives"
                f" there, grant it read-only: --python-path DIR (wasgi run), or the group's python_path or a"
                f" read-only [[grant]] in its policy (wasgi.toml)."
            )
            import json

            hint += _UNGRANTED_MARK + json.dumps({"module": top, "entries": hidden, "hint": hint})
        elif isinstance(e, ModuleNotFoundError):
            hint = (
                f"\nHint: module {e.name!r} is not on sys.path inside the sandbox"
                f" ({', '.join(p for p in sys.path if p) or 'empty'})."
                f" As under mod_wsgi, the script's directory is not added by itself:"
                f" pass --python-path DIR (or insert it into sys.path in the script)."
            )
        _startup_failed(f"{script}: the script raised while it was imported:\n{text}{hint}")
    finally:
        restore_sockets()

    app = getattr(module, callable_name, None)
    if app is None:
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        hint = ""
        if "create_app" in names:
            hint = f" It defines create_app: add `{callable_name} = create_app()`."
        elif "app" in names:
            hint = f" Add `{callable_name} = app` or pass --callable app."
        _startup_failed(
            f"{script}: the script defines no {callable_name!r} (the WSGI callable mod_wsgi"
            f" looks for). Names it does define: {', '.join(names) or 'none'}.{hint}"
        )
    if not callable(app):
        _startup_failed(
            f"{script}: {callable_name!r} is a {type(app).__name__}, not a WSGI callable"
        )
    return app


# ---------------------------------------------------------------- one request


class Input:
    """wsgi.input: the request body, fetched from the host as the app reads it."""

    __slots__ = ("_remaining", "_buf", "_eof")

    def __init__(self, length):
        # None: read until the host says the body ended (chunked uploads).
        self._remaining = length
        self._buf = b""
        self._eof = length == 0

    def _fetch(self, want):
        """Ask the host for up to `want` bytes; False at the end of the body."""
        if self._eof:
            return False
        if self._remaining is not None:
            want = min(want, self._remaining)
            if want <= 0:
                self._eof = True
                return False
        send((K_READ, min(want, READ_CHUNK).to_bytes(4, "big")))
        kind, payload = read_frame()
        if kind == K_BODY:
            if not payload:
                self._eof = True
                return False
            if self._remaining is not None:
                self._remaining -= len(payload)
            self._buf += payload
            return True
        if kind == K_BODY_ERROR:
            self._eof = True
            raise RequestBodyError(f"request data read error: {payload.decode('utf-8', 'replace')}")
        raise ProtocolError(f"expected a body frame, got {kind!r}")

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fetch(READ_CHUNK):
                pass
            data, self._buf = self._buf, b""
            return data
        while len(self._buf) < size and self._fetch(size - len(self._buf)):
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size=-1):
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                end = nl + 1
                break
            if 0 <= (size if size is not None else -1) <= len(self._buf):
                end = size
                break
            if not self._fetch(READ_CHUNK):
                end = len(self._buf)
                break
        if size is not None and 0 <= size < end:
            end = size
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self):
        pass


class FileWrapper:
    """wsgi.file_wrapper: iterate a file-like object in blocks."""

    def __init__(self, filelike, blksize=MAX_DATA):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


import re

# RFC 9110 token characters for header names; values may hold any latin-1
# character but CR, LF and NUL.
_header_name_ok = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_header_value_bad = re.compile(r"[\r\n\0]|[^\x00-\xff]").search


# Header names that passed _check_header. An app sends the same few names in
# every response: each is matched by the regex once, then found here. Bounded,
# since the names are the app's.
_valid_names = set()


def _check_header(name, value):
    if type(name) is not str or type(value) is not str:
        raise TypeError(f"header name and value must be str, got {name!r}: {value!r}")
    if not _header_name_ok(name):
        raise ValueError(f"invalid header name {name!r}")
    bad = _header_value_bad(value)
    if bad:
        if bad.group() in "\r\n\0":
            raise ValueError(f"header {name!r} contains a control character (CR, LF or NUL)")
        raise ValueError(f"header {name!r} is not latin-1 encodable (PEP 3333)")


class Response:
    """One request's response side: start_response, write() and the body frames."""

    __slots__ = ("status", "headers", "sent", "head_only", "pending", "unacked_bytes",
                 "unacked_frames", "has_length")

    def __init__(self, head_only):
        self.status = None
        self.headers = None
        self.sent = False  # status and headers have gone to the host
        self.head_only = head_only
        self.pending = []  # (kind, payload) frames not yet sent
        self.unacked_bytes = 0
        self.unacked_frames = 0
        self.has_length = False  # the app gave a Content-Length

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be str, got {type(status).__name__}")
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"status must look like '200 OK', got {status!r}")
        # Printable ASCII holds no CR, LF or NUL and is latin-1: no regex needed.
        if not (status.isascii() and status.isprintable()) and _header_value_bad(status):
            raise ValueError(f"status {status!r} contains CR, LF, NUL or non-latin-1 characters")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, got {type(headers).__name__}")
        if len(headers) > MAX_HEADERS:
            raise ValueError(f"{len(headers)} response headers: wasgi passes at most {MAX_HEADERS}")
        has_length = False
        size = 0
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"each header must be a (name, value) tuple, got {item!r}")
            name, value = item
            # A name checked before and a printable ASCII value (the usual
            # header) pass without a regex; anything else gets every check.
            if (type(name) is not str or name not in _valid_names or type(value) is not str
                    or not (value.isascii() and value.isprintable())):
                _check_header(name, value)
                if len(_valid_names) < 256:
                    _valid_names.add(name)
            size += len(name) + len(value) + 2
            if not has_length and len(name) == 14 and name.lower() == "content-length":
                has_length = True
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"the response headers take {size} bytes: wasgi passes at most {MAX_HEADER_BYTES}")
        self.status = status
        self.headers = headers
        self.has_length = has_length
        return self.write

    def _head_frame(self):
        parts = [self.status]
        for name, value in self.headers:
            parts.append(name)
            parts.append(value)
        return (K_START, "\0".join(parts).encode("latin-1"))

    def add_content_length(self, length):
        if not self.has_length:
            self.headers.append(("Content-Length", str(length)))
            self.has_length = True

    def _ensure_head(self):
        if not self.sent:
            if self.status is None:
                raise AssertionError("the application sent body data before calling start_response()")
            self.pending.append(self._head_frame())
            self.sent = True

    def write(self, data, flush=True):
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError(f"the application must produce bytes, not {type(data).__name__}")
        if not self.sent:
            self._ensure_head()
        if self.head_only or not data:
            return
        if len(data) <= MAX_DATA:
            chunks = (data,)
        else:
            view = memoryview(data)
            chunks = [view[i:i + MAX_DATA] for i in range(0, len(data), MAX_DATA)]
        for chunk in chunks:
            self.pending.append((K_DATA, chunk))
            self.unacked_bytes += len(chunk)
            self.unacked_frames += 1
            if self.unacked_bytes >= ACK_BYTES or self.unacked_frames >= ACK_FRAMES:
                self.flush()
                self.unacked_bytes = self.unacked_frames = 0
                kind, _ = read_frame()
                if kind == K_CANCEL:
                    raise ClientGone()
                if kind != K_CONTINUE:
                    raise ProtocolError(f"expected K or C, got {kind!r}")
        if flush:
            self.flush()

    def flush(self):
        if self.pending:
            send(*self.pending)
            self.pending = []


def _format_exc(e):
    import traceback

    return "".join(traceback.format_exception(e))


def _request_label(environ):
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    qs = environ.get("QUERY_STRING")
    label = f"{environ.get('REQUEST_METHOD', '?')} {path}{'?' + qs if qs else ''}"
    # The path is the client's, decoded (%0D%0A is CR LF): one line in the log.
    return label if label.isprintable() else label.encode("unicode_escape").decode("latin-1")


# The environ keys that are the same for every request.
_WSGI_STATIC = {
    "wsgi.version": (1, 0),
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
    "wsgi.input_terminated": True,
}


def handle(app, payload, errors):
    it = iter(payload.decode("latin-1").split("\0"))
    environ = dict(zip(it, it))
    environ.update(_WSGI_STATIC)
    length = environ.get("CONTENT_LENGTH")
    environ["wsgi.input"] = Input(int(length) if length else None)
    environ["wsgi.errors"] = errors
    response = Response(environ["REQUEST_METHOD"] == "HEAD")

    # The frame that ends this request. It goes out only after close() and
    # the log flushes, when the bridge has nothing left to do but read the
    # next request: the host stops driving the guest once it has it.
    last = _END_FRAME
    result = None
    try:
        result = app(environ, response.start_response)
        if type(result) in (list, tuple) and response.status is not None and not response.sent:
            # The whole body is known: give it a length and send it in one write.
            if len(result) == 1 and type(body := result[0]) is bytes and len(body) < ACK_BYTES:
                # The usual body, one chunk: add_content_length() and write()
                # inlined (one frame, under the flow-control window: no wait).
                if not response.has_length:
                    response.headers.append(("Content-Length", str(len(body))))
                    response.has_length = True
                response.pending.append(response._head_frame())
                response.sent = True
                if body and not response.head_only:
                    response.pending.append((K_DATA, body))
                    response.unacked_bytes += len(body)
                    response.unacked_frames += 1
            else:
                if not response.has_length and all(type(c) is bytes for c in result):
                    response.add_content_length(sum(map(len, result)))
                for chunk in result:
                    response.write(chunk, False)
        else:
            for chunk in result:
                if chunk:
                    response.write(chunk)
                    if response.head_only:
                        break  # the head is out and HEAD sends no body: stop early
        if not response.sent:
            if response.status is None:
                raise AssertionError("the application returned without calling start_response()")
            response.add_content_length(0)
            response._ensure_head()
    except ClientGone:
        response.pending = []
    except (ProtocolError, SystemExit):
        raise
    except BaseException as e:
        label = _request_label(environ)
        if _from_request_body(e):
            # The host answers the client (400 for a malformed body) and logs
            # why; no traceback to send anyone hunting in the app.
            log("warn", f"{label}: the app stopped on an unreadable request body: {e}")
        if not response.sent:
            if not _from_request_body(e):
                log("error", f"Exception on {label}:\n{_format_exc(e)}")
            body = b"Internal Server Error\n"
            response.pending = [
                (K_START, b"\0".join([
                    b"500 Internal Server Error",
                    b"Content-Type", b"text/plain; charset=utf-8",
                    b"Content-Length", str(len(body)).encode(),
                ])),
            ]
            if not response.head_only:
                response.pending.append((K_DATA, body))
        else:
            if not _from_request_body(e):
                log("error", f"Exception on {label} after the response started:\n{_format_exc(e)}")
            response.pending = []
            last = (K_FAILED, str(e).encode("utf-8", "backslashreplace"))
    close = getattr(result, "close", None)
    if close is None:
        # Nothing left to run: the end goes out with the body, in one write.
        response.pending.append(last)
        last = None
    response.flush()
    if close is not None:
        try:
            close()
        except Exception as e:
            log("error", f"close() of the response iterable raised on {_request_label(environ)}:\n{_format_exc(e)}")
    if _stdout._partial:
        _stdout.flush()
    if _stderr._partial:
        _stderr.flush()
    if last is not None:
        send(last)


def init(config):
    """Everything before the first request: the guest's sys.path, working
    directory and standard streams, then the app itself. It reads no frame
    (it may log, and a StartupFailed tells the caller why the app cannot
    load). Returns the WSGI callable."""
    sys.argv = [config["script"]]
    # Drop the '' entry `python -c` puts first: mod_wsgi adds no directory by itself.
    sys.path[:] = [p for p in sys.path if p]
    for p in reversed(config["python_path"]):
        sys.path.insert(0, p)
    if config.get("home"):
        os.chdir(config["home"])
    sys.stdout = sys.__stdout__ = RestrictedStdout("stdout") if config.get("restrict_stdout") else _stdout
    sys.stderr = sys.__stderr__ = _stderr
    _install_no_network()
    _install_host_facts(config)
    _install_one_thread()
    _install_denial_explainer(config)
    return load_application(config["script"], config["callable"])


class _ReadsDuringImport:
    """Records the files the app opens while it is imported (templates, a
    settings file, ...), so the host can tell when a snapshot is stale."""

    def __enter__(self):
        import builtins
        import io

        self.paths = set()
        self.active = True
        self.wrapped = builtins.open

        def open(file, mode="r", *args, **kwargs):
            f = self.wrapped(file, mode, *args, **kwargs)
            reading = not (isinstance(mode, str) and any(c in mode for c in "wax+"))
            if self.active and reading and isinstance(file, (str, bytes, os.PathLike)):
                self.paths.add(os.path.abspath(os.fsdecode(file)))
            return f

        self.open = builtins.open = io.open = open
        return self

    def __exit__(self, *exc):
        import builtins
        import io

        # The denial explainer installed during the import wraps this open:
        # it stays, and this one only passes calls through from now on.
        self.active = False
        if builtins.open is self.open:
            builtins.open = io.open = self.wrapped


def _open_files():
    """File descriptors other than the grants' directories and stdio: a
    snapshot cannot carry them to a new instance."""
    import stat

    found = []
    for fd in range(3, 512):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            found.append(fd)
    return found


_prepared = None


def serve(app=None):
    """Tells the host the app is ready (and how the frames travel), then
    serves requests until the host closes the channel. Without `app`: an
    instance restored from a snapshot, whose app was imported by main()."""
    if app is None:
        app = _prepared
        _after_restore()
    errors = LogStream("wsgi.errors")
    send((K_READY, TRANSPORT.encode()))
    while True:
        kind, payload = read_frame()
        if kind != K_REQUEST:
            raise ProtocolError(f"expected a request frame, got {kind!r}")
        handle(app, payload, errors)


def _after_restore():
    """Every instance restored from one snapshot would share the state of
    the random generators seeded at import; give each its own."""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None


def main():
    import json

    config = json.loads(sys.argv[2])
    _choose_transport(config)
    snapshot = config.get("snapshot")
    try:
        if snapshot:
            with _ReadsDuringImport() as reads:
                app = init(config)
        else:
            app = init(config)
    except StartupFailed as e:
        send((K_STARTUP_FAILED, str(e).encode("utf-8", "backslashreplace")))
        raise SystemExit(1)
    if not snapshot:
        serve(app)
        return
    # Snapshot mode (python-reactor.wasm): tell the host what the import
    # read, and return; the host snapshots the instance and starts every
    # instance of the group at serve().
    global _prepared
    _prepared = app
    modules = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    files = sorted((reads.paths | {f for f in modules if isinstance(f, str)}) - {"<wasgi-bridge>"})
    # Each path a few times (host/src/sandbox/instance.rs, WARMUP_ROUNDS): the
    # interpreter specialises an instruction only after it ran more than
    # once, and writes to the code as it does.
    rounds = config.get("warmup_rounds", 1)
    for path in config.get("warmup", []):
        _warm_up(path, rounds)
    report = json.dumps({"files": files, "open_fds": _open_files()}).encode()
    _settle_heap()
    send((K_PREPARED, report))


def _warm_up(target, rounds):
    """One GET of `target` (a path, with an optional query) before the
    snapshot, answered to no one: the code a request runs is then already
    specialised by the interpreter and its lazy caches (routing tables,
    compiled templates) are filled, in the snapshot, so an instance's first
    request neither pays for that nor writes to the pages it would touch.
    Whatever the call leaves in memory is in every instance, as the import
    is. The outcome is logged; a failure does not stop the snapshot."""
    global send, read_frame
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0", "HTTP_HOST": "localhost",
        "CONTENT_LENGTH": "0", "wsgi.url_scheme": "http",
    }
    payload = "\0".join(f"{k}\0{v}" for k, v in environ.items()).encode("latin-1")
    statuses = []
    real_send, real_read_frame = send, read_frame

    def collect(*sent):
        # Only the status is kept: a large body is not held (nor left in the heap).
        statuses.extend(p.split(b"\0", 1)[0].decode("latin-1") for k, p in sent if k == K_START)

    def no_one_waits():
        # A body past the flow-control window waits for the host's K: no
        # host reads this response, so it is always "go on".
        return K_CONTINUE, b""

    send, read_frame = collect, no_one_waits
    try:
        for _ in range(rounds):
            handle(_prepared, payload, LogStream("wsgi.errors"))
    except BaseException as e:
        log("warn", f"warm-up GET {target} before the snapshot failed:\n{_format_exc(e)}")
        return
    finally:
        send, read_frame = real_send, real_read_frame
    status = statuses[0] if statuses else "no response"
    log("info" if status[:1] in ("2", "3") else "warn", f"warm-up GET {target} before the snapshot: {status}")


def _settle_heap():
    """Before the snapshot: what the import built is kept out of the way of
    the instances' writes. gc.freeze() moves it where the collector never
    walks (a collection would otherwise write to every object's header), and
    _wasgi.immortalize makes it immortal, so using an object no longer writes
    its reference count. An instance then shares the snapshot's pages instead
    of copying each page it reads an object from."""
    import gc

    gc.collect()
    immortalize = getattr(sys.modules.get("_wasgi"), "immortalize", None)
    if immortalize is not None:
        immortalize(gc.get_objects())
    gc.freeze()


if __name__ == "wasgi_bridge":
    main()
