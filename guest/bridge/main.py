# ---------------------------------------------------------------- start and serve


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
    _install_network_or_not(config.get("network"))
    _install_host_facts(config)
    _install_one_thread()
    _install_denial_explainer(config)
    _native_recipes.update(config.get("native_recipes") or {})
    _guard_built_in_extensions(config.get("native_built") or {})
    return load_application(config["script"], config["callable"])


def _install_network_or_not(network):
    """Outbound connections through the host when the group has connect
    grants (config["network"]) and this interpreter has the host calls for
    them; otherwise sockets that say why there is no network."""
    if not network:
        _install_no_network()
        return
    try:
        import _wasgi
    except ImportError:
        _wasgi = None
    if not hasattr(_wasgi, "net_connect"):
        _install_no_network(NETWORK_NEEDS_313)
        transport.log("warn", f"the group has [[connect]] grants, but {NETWORK_NEEDS_313}")
        return
    _install_network(network, _wasgi)


def serve(app=None):
    """Tells the host the app is ready (and how the frames travel), then
    serves requests until the host closes the channel. Without `app`: an
    instance restored from a snapshot, whose app was imported by main()."""
    if app is None:
        app = _prepared
        _after_restore()
    errors = LogStream("wsgi.errors")
    frames = transport
    read_frame = frames.read_frame
    frames.send((K_READY, frames.name.encode()))
    while True:
        kind, payload = read_frame()
        if kind != K_REQUEST:
            raise ProtocolError(f"expected a request frame, got {kind!r}")
        handle(app, payload, errors, frames)


def main():
    import json

    global transport, _prepared
    config = json.loads(sys.argv[2])
    transport = choose_transport(config)
    snapshot = config.get("snapshot")
    try:
        if snapshot:
            with _ReadsDuringImport() as reads:
                app = init(config)
        else:
            app = init(config)
    except StartupFailed as e:
        transport.send((K_STARTUP_FAILED, str(e).encode("utf-8", "backslashreplace")))
        raise SystemExit(1)
    if not snapshot:
        serve(app)
        return
    # Snapshot mode (python-reactor.wasm): tell the host what the import
    # read, and return; the host snapshots the instance and starts every
    # instance of the group at serve().
    _prepared = app
    modules = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    files = sorted((reads.paths | {f for f in modules if isinstance(f, str)}) - {"<wasgi-bridge>"})
    # Each path a few times (host/src/sandbox/instance.rs, WARMUP_ROUNDS): the
    # interpreter specialises an instruction only after it ran more than
    # once, and writes to the code as it does.
    rounds = config.get("warmup_rounds", 1)
    for path in config.get("warmup", []):
        _warm_up(path, rounds)
    dropped = _drop_connections_for_snapshot()
    if dropped:
        transport.log(
            "warn",
            f"{len(dropped)} connection(s) the app opened while it was imported ({', '.join(sorted(set(dropped)))})"
            " were closed before the snapshot: instances start without them, and a driver that kept one"
            " sees it reset at its first use (open connections per request or lazily; with SQLAlchemy,"
            " pool_pre_ping=True reconnects)",
        )
    report = json.dumps({"files": files, "open_fds": _open_files()}).encode()
    _settle_heap()
    transport.send((K_PREPARED, report))


if __name__ == "wasgi_bridge":
    main()
