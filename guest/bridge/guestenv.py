# ---------------------------------------------------------------- what the sandbox lacks
#
# The sandbox has no network, no users or host name, and one thread; the
# bridge makes each absence look the way an app expects (an OSError, the
# configured user, work run in place) rather than an AttributeError.


def _install_no_network(message=None):
    """Sockets and name lookups fail with OSError (ENETUNREACH), saying how
    to grant a connection: socket.socket is the bridge's (netsock.py) over a
    backend that refuses every connection. This WASI build has no
    getaddrinfo at all, and its sockets fail in obscure ways; a client
    library gets its usual network error instead."""
    _install_sockets(_NoNetwork(message or NO_NETWORK))


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
                transport.log("warn", f"a thread was refused at {where}: {THREAD_REFUSED}")
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
