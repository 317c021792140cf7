"""The sandbox escape table's probe (tests/tests/e2e/escape.rs).

POST /op with a JSON body performs exactly one filesystem operation and
answers 200 with JSON {"ok": bool, "error": "ExceptionType: message",
"result": ...}, whatever happens:

    {"op": "read", "args": [PATH], "cwd": PATH or null, "dir_fd": PATH or null}

A PATH is {"hex": "..."} or {"b64": "..."} (any bytes: NUL, non-UTF-8, over-long
names) or a plain string. "cwd" makes the operation run after os.chdir(cwd),
with the working directory restored afterwards; "dir_fd" opens that
directory and passes its descriptor to operations that take one, so relative
paths resolve from it. GET /env tells the test where this group's private
directories are.

Every exception is an answer, never a crash of the instance (only SystemExit
and KeyboardInterrupt propagate).
"""

import base64
import json
import os
import stat as _stat

HOME = os.getcwd()
READ_LIMIT = 1 << 16


def _path(arg):
    if isinstance(arg, dict):
        if "hex" in arg:
            return bytes.fromhex(arg["hex"])
        if "b64" in arg:
            return base64.b64decode(arg["b64"])
        raise ValueError(f"a path is {{'hex': ...}}, {{'b64': ...}} or a string, not {arg!r}")
    if isinstance(arg, str):
        return arg.encode("utf-8", "surrogateescape")
    raise TypeError(f"a path is {{'hex': ...}}, {{'b64': ...}} or a string, not {type(arg).__name__}")


def _name(raw):
    """Bytes from the filesystem, shown losslessly in JSON."""
    if isinstance(raw, str):
        raw = os.fsencode(raw)
    return raw.decode("latin-1")


def _stat_result(st):
    return {
        "mode": st.st_mode,
        "kind": "dir" if _stat.S_ISDIR(st.st_mode) else "link" if _stat.S_ISLNK(st.st_mode) else "file" if _stat.S_ISREG(st.st_mode) else "other",
        "size": st.st_size,
        "ino": st.st_ino,
        "nlink": st.st_nlink,
        "mtime": st.st_mtime,
    }


def _payload(args, index, default=b"written by the escape probe\n"):
    return _path(args[index]) if len(args) > index else default


def _write(path, args, mode, dir_fd):
    flags = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    fd = os.open(path, flags, 0o644, dir_fd=dir_fd) if dir_fd is not None else None
    data = _payload(args, 1)
    if fd is None:
        with open(path, mode + "b") as f:
            return f.write(data)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def _read(path, dir_fd):
    if dir_fd is None:
        with open(path, "rb") as f:
            data = f.read(READ_LIMIT)
    else:
        fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
        try:
            data = os.read(fd, READ_LIMIT)
        finally:
            os.close(fd)
    return {"size": len(data), "data": _name(data)}


def _create_excl(path, args, dir_fd):
    kwargs = {"dir_fd": dir_fd} if dir_fd is not None else {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, **kwargs)
    try:
        return os.write(fd, _payload(args, 1))
    finally:
        os.close(fd)


def _walk(path):
    out = []
    for top, dirs, files in os.walk(path, onerror=_raise):
        out.extend(_name(os.path.join(top, n)) for n in dirs + files)
        if len(out) > 1000:
            break
    return out


def _raise(error):
    raise error


def perform(op, args, dir_fd):
    """Exactly one filesystem operation; returns its result or raises."""
    p = [a if isinstance(a, int) else _path(a) for a in args]
    fd_kw = {"dir_fd": dir_fd} if dir_fd is not None else {}
    if op == "read":
        return _read(p[0], dir_fd)
    if op == "write":
        return _write(p[0], args, "w", dir_fd)
    if op == "append":
        return _write(p[0], args, "a", dir_fd)
    if op == "create_excl":
        return _create_excl(p[0], args, dir_fd)
    if op == "truncate":
        os.truncate(p[0], 0)
        return None
    if op == "stat":
        return _stat_result(os.stat(p[0], **fd_kw))
    if op == "lstat":
        return _stat_result(os.stat(p[0], follow_symlinks=False, **fd_kw))
    if op == "exists":
        # os.path.exists hides errors: answer ok only if the path is there.
        if not os.path.lexists(p[0]):
            raise FileNotFoundError(f"{p[0]!r} does not exist")
        return True
    if op == "listdir":
        return [_name(n) for n in os.listdir(p[0])]
    if op == "scandir":
        with os.scandir(p[0]) as it:
            return [[_name(e.name), e.is_dir(follow_symlinks=False), e.is_symlink()] for e in it]
    if op == "walk":
        return _walk(p[0])
    if op == "readlink":
        return _name(os.readlink(p[0], **fd_kw))
    if op == "symlink":  # args: target, link path
        os.symlink(p[0], p[1], **fd_kw)
        return None
    if op == "link":  # args: existing, new. WASI links the path itself, never what a symlink points to
        os.link(p[0], p[1])
        return None
    if op == "link_nofollow":
        os.link(p[0], p[1], follow_symlinks=False)
        return None
    if op == "rename":
        os.rename(p[0], p[1])
        return None
    if op == "replace":
        os.replace(p[0], p[1])
        return None
    if op in ("chmod", "lchmod"):
        mode = p[1] if len(p) > 1 else 0o777
        os.chmod(p[0], mode, follow_symlinks=(op == "chmod"))
        # WASI has no permission bits: CPython's chmod here reports success
        # without doing anything, even for a path that does not exist. Only
        # a change the guest can see counts as done (the test also checks
        # the host's modes).
        after = _stat.S_IMODE(os.stat(p[0], follow_symlinks=(op == "chmod")).st_mode)
        if after != mode:
            raise NotImplementedError(f"chmod reported success but the mode is still {after:o}, not {mode:o} (a no-op under WASI)")
        return None
    if op == "utime":
        os.utime(p[0], (1, 1), **fd_kw)
        return None
    if op == "lutime":
        os.utime(p[0], (1, 1), follow_symlinks=False, **fd_kw)
        return None
    if op in ("futime", "ftruncate"):
        # A descriptor opened for reading only, then changed through it.
        fd = os.open(p[0], os.O_RDONLY, **fd_kw)
        try:
            if op == "futime":
                os.utime(fd, (1, 1))
            else:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        return None
    if op == "mkdir":
        os.mkdir(p[0], **fd_kw)
        return None
    if op == "rmdir":
        os.rmdir(p[0], **fd_kw)
        return None
    if op == "unlink":
        os.unlink(p[0], **fd_kw)
        return None
    if op == "chdir":
        os.chdir(p[0])
        return _name(os.getcwd())
    if op == "getcwd":
        return _name(os.getcwd())
    raise ValueError(f"unknown operation {op!r}")


def answer(body):
    dir_fd = None
    try:
        request = json.loads(body)
        if request.get("cwd") is not None:
            os.chdir(_path(request["cwd"]))
        if request.get("dir_fd") is not None:
            dir_fd = os.open(_path(request["dir_fd"]), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        result = perform(request["op"], request.get("args", []), dir_fd)
        return {"ok": True, "error": None, "result": result}
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "result": None}
    finally:
        if dir_fd is not None:
            try:
                os.close(dir_fd)
            except OSError:
                pass
        # Whatever the operation did to the working directory, the next
        # request starts from the app's home again.
        try:
            if os.getcwd() != HOME:
                os.chdir(HOME)
        except OSError:
            pass


def env():
    return {
        "ok": True,
        "error": None,
        "result": {
            "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX"),
            "cwd": os.getcwd(),
            "home": HOME,
            "supports_dir_fd": sorted(f.__name__ for f in os.supports_dir_fd),
            "supports_follow_symlinks": sorted(f.__name__ for f in os.supports_follow_symlinks),
        },
    }


def application(environ, start_response):
    try:
        path = environ.get("PATH_INFO", "")
        if path == "/op" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            out = answer(environ["wsgi.input"].read(length))
        elif path == "/env":
            out = env()
        else:
            out = {"ok": False, "error": f"NotFound: {path}", "result": None}
        data = json.dumps(out).encode()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        data = json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "result": None}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
