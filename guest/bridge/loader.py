# ---------------------------------------------------------------- loading the script, and explanations


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




def _guard_sockets():
    """Until the script is imported, starting a server means `app.run()`:
    binding a port and listening are refused. A client connection at import
    is legitimate (an app may open its database then): with connect grants
    it is made, without them it fails with the sandbox's no-network error,
    which says how to grant one."""

    def refuse(*args, **kwargs):
        import traceback

        raise ServerAtImport(traceback.extract_stack()[:-1])

    saved = {name: _Socket.__dict__[name] for name in ("bind", "listen")}

    def bind(self, address):
        if _is_server_address(self._family, address):
            refuse()
        return saved["bind"](self, address)

    def listen(self, backlog=0):
        refuse()

    _Socket.bind, _Socket.listen = bind, listen

    def restore():
        for name, value in saved.items():
            setattr(_Socket, name, value)

    return restore


# Who the messages name: the group and its policies. Read when a message is
# made, not captured at import: an instance restored from a snapshot that
# several groups share is told its own by the host (K_IDENTITY).
_names = {"group": "?", "policies": []}


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
    _names.update(group=config.get("group", "?"), policies=config.get("policies", []))
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
                f" Grant the real directory to group {_names['group']!r} and use it directly, or put it on"
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
                f"{reason}. Group {_names['group']!r}; policies in force: {', '.join(_names['policies']) or 'none'};"
                f" grants: {granted}. A grant that would allow it:\n[[grant]]\npath = {os.path.dirname(path)!r}\naccess = {access!r}"
            )
        transport.log("warn", f"denied: {'writing' if writing else 'reading'} {path}: {message}")
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


# The packages whose C extensions wasgi builds into the interpreter, each
# with its modules ({"MarkupSafe": ["markupsafe._speedups"]}): the host's
# config["native_recipes"].
_native_recipes = {}


class _BuiltInExtensionGuard:
    """Before the BuiltinImporter on sys.meta_path: a built-in extension
    module is used only while its package in the environment is the
    version it was built from. The environment can change under a running
    interpreter (`pip install -U` and a reload that keeps the interpreter):
    the new Python code over the old C module could misbehave, so the
    import fails instead, the package falls back to pure Python where it
    can, and the log says why and what to do."""

    def __init__(self, built):
        # module → (package, version it was built from)
        self.built = {m: (package, info["version"]) for package, info in built.items() for m in info["modules"]}
        self.checked = {}

    def find_spec(self, fullname, path=None, target=None):
        expected = self.built.get(fullname)
        if expected is None:
            return None
        package, version = expected
        if package not in self.checked:
            import importlib.metadata

            try:
                self.checked[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                self.checked[package] = None
            if self.checked[package] is not None and not _same_version(self.checked[package], version):
                transport.log(
                    "warn",
                    f"{package} in the environment is now {self.checked[package]}, but this interpreter's"
                    f" built-in {fullname} was built from {version}: it is not used (the package runs in"
                    f" pure Python if it can). Restart the group's server (or SIGHUP `wasgi serve`) to"
                    f" build and run {package} {self.checked[package]}'s extensions.",
                )
        found = self.checked[package]
        if found is not None and _same_version(found, version) is False:
            raise ImportError(
                f"{fullname} is built into this interpreter from {package} {version}, but the environment"
                f" now has {package} {found}; restart the server to build the new version's extensions",
                name=fullname,
            )
        return None


def _same_version(installed, built):
    """Whether two spellings name one release ("1.0_post1" in a directory
    name is "1.0-post1" in METADATA)."""
    return installed.replace("_", "-").lower() == built.replace("_", "-").lower()


def _guard_built_in_extensions(built):
    if built:
        sys.meta_path.insert(0, _BuiltInExtensionGuard(built))


def _native_extension_hint(module_name):
    """If `module_name` exists only as a native extension built for the host,
    say so: such files cannot load inside the sandbox, and only the packages
    wasgi has a recipe for are built into its interpreter instead."""
    import glob

    parts = module_name.split(".")
    for entry in sys.path:
        if not entry or entry.endswith(".zip"):
            continue
        pattern = os.path.join(glob.escape(entry), *map(glob.escape, parts[:-1]), glob.escape(parts[-1]) + ".*.so")
        found = glob.glob(pattern)
        if found:
            top = parts[0]
            built = [package for package, modules in _native_recipes.items() if module_name in modules]
            if built:
                why = (
                    f" wasgi builds it into cpython-3.13 from its recipe for {built[0]}, but this"
                    f" group's interpreter does not have it: the server log says why (the build"
                    f" failed, or the group runs cpython-3.12)."
                )
            else:
                known = ", ".join(sorted(_native_recipes)) or "none yet"
                why = (
                    f" wasgi builds the native extensions of the packages it has a recipe for"
                    f" ({known}) into its interpreter, and has none for {top!r}, which has no"
                    f" pure-Python fallback for it. Use a pure-Python alternative or a version"
                    f" of {top!r} that does not need it, or ask for a recipe."
                )
            return (
                f"\nHint: {module_name!r} is a native extension built for the host ({found[0]})."
                f" Native code built for the host cannot load inside the WebAssembly sandbox." + why
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
            f" wasgi serves the app itself and a guest cannot listen for connections: put that call"
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
