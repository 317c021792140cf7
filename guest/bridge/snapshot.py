# ---------------------------------------------------------------- snapshot and warm-up


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



def _after_restore():
    """Every instance restored from one snapshot would share the state of
    the random generators seeded at import; give each its own. The host
    then says which group this instance serves (a snapshot may be shared by
    groups whose guests see the same files, environment and host facts):
    what the bridge's messages name."""
    kind, payload = transport.read_frame()
    if kind != K_IDENTITY:
        raise ProtocolError(f"expected the identity frame after a restore, got {kind!r}")
    import json

    identity = json.loads(payload)
    _names.update(group=identity["group"], policies=identity["policies"])
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None




def _warm_up(target, rounds):
    """One GET of `target` (a path, with an optional query) before the
    snapshot, answered to no one: the code a request runs is then already
    specialised by the interpreter and its lazy caches (routing tables,
    compiled templates) are filled, in the snapshot, so an instance's first
    request neither pays for that nor writes to the pages it would touch.
    Whatever the call leaves in memory is in every instance, as the import
    is. The outcome is logged; a failure does not stop the snapshot."""
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0", "HTTP_HOST": "localhost",
        "CONTENT_LENGTH": "0", "wsgi.url_scheme": "http",
    }
    payload = "\0".join(f"{k}\0{v}" for k, v in environ.items()).encode("latin-1")
    answered = _NoOneWaits(transport)
    try:
        for _ in range(rounds):
            handle(_prepared, payload, LogStream("wsgi.errors"), answered)
    except BaseException as e:
        transport.log("warn", f"warm-up GET {target} before the snapshot failed:\n{_format_exc(e)}")
        return
    status = answered.statuses[0] if answered.statuses else "no response"
    transport.log("info" if status[:1] in ("2", "3") else "warn", f"warm-up GET {target} before the snapshot: {status}")


class _NoOneWaits(Transport):
    """The warm-up's transport: the response goes to no one, and the log to
    the instance's own transport."""

    name = "warm-up"

    def __init__(self, real):
        self.statuses = []
        self.log = real.log

    def send(self, *frames):
        # Only the status is kept: a large body is not held (nor left in the heap).
        self.statuses.extend(p.split(b"\0", 1)[0].decode("latin-1") for k, p in frames if k == K_START)

    def read_frame(self):
        # A body past the flow-control window waits for the host's K: no
        # host reads this response, so it is always "go on".
        return K_CONTINUE, b""

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
