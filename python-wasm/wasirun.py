#!/usr/bin/env python3
"""Run a WASI command module under wasmtime (the `wasmtime` package from PyPI).

    wasirun.py [--dir HOST::GUEST[:ro]]... [--env NAME=VALUE]... [--argv0 NAME]
               [--stdin FILE] [--invoke EXPORT]... MODULE.wasm [ARG]...

The build uses it as CPython's host runner (HOSTRUNNER, python.sh), to compile
the standard library's .pyc with the guest interpreter, and `check` uses it to
test the result. With --invoke, a reactor's `_initialize` and then each named
export run instead of `_start`. Exit status is the guest's. Nothing of the host is visible
to the guest but the directories named with --dir and the variables named
with --env; stdout and stderr are inherited. With $WASIRUN_CACHE_DIR set, the
compiled module is kept there and reused.
"""

import argparse
import hashlib
import importlib.metadata
import os
import sys
import threading

import wasmtime

# The native stack that wasm frames may use. CPython's own runner passes 8 MiB
# to the wasmtime CLI; this binding cannot raise async_stack_size (2 MiB), which
# caps it. The guest's own C stack is in linear memory (8 MiB, set at link
# time). The guest runs on a thread with a larger native stack, so that a
# runaway recursion traps instead of crashing this process.
MAX_WASM_STACK = 2 << 20
THREAD_STACK = 16 << 20


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", action="append", default=[], metavar="HOST::GUEST[:ro]")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--argv0")
    p.add_argument("--stdin", metavar="FILE")
    p.add_argument("--invoke", action="append", default=[], metavar="EXPORT")
    p.add_argument("module")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p.parse_args(argv)


def load(engine, path):
    """Compile the module, or load it from $WASIRUN_CACHE_DIR when compiled before
    (keyed by the module's SHA-256 and the wasmtime package's version)."""
    cache = os.environ.get("WASIRUN_CACHE_DIR")
    if not cache:
        return wasmtime.Module.from_file(engine, path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:32]
    version = importlib.metadata.version("wasmtime")
    artifact = os.path.join(cache, f"{digest}-wasmtime{version}.cwasm")
    if os.path.exists(artifact):
        try:
            return wasmtime.Module.deserialize_file(engine, artifact)
        except wasmtime.WasmtimeError:
            pass  # stale or damaged: compile again
    module = wasmtime.Module.from_file(engine, path)
    os.makedirs(cache, exist_ok=True)
    tmp = f"{artifact}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(module.serialize())
    os.replace(tmp, artifact)
    return module


def define_wasgi_stubs(linker, module):
    """wasgi's own build imports the host calls of its `_wasgi` module (module
    "wasgi", see wasgi/_wasgimodule.c). Only the wasgi host provides them;
    here they link, and trap if the guest calls one."""
    for imp in module.imports:
        if imp.module != "wasgi":
            continue

        def stub(*args, name=imp.name):
            raise wasmtime.WasmtimeError(f"wasgi.{name} is provided by the wasgi host only")

        linker.define_func(imp.module, imp.name, imp.type, stub)


def run(opts):
    config = wasmtime.Config()
    config.max_wasm_stack = MAX_WASM_STACK
    # As wasgi's wasmtime: no threads proposal (this package enables it by
    # default), so a module with atomics or shared memory is refused here too.
    config.wasm_threads = False
    config.shared_memory = False
    engine = wasmtime.Engine(config)
    module = load(engine, opts.module)

    wasi = wasmtime.WasiConfig()
    wasi.argv = [opts.argv0 or opts.module] + opts.args
    names, values = [], []
    for item in opts.env:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"wasirun: --env {item!r}: expected NAME=VALUE")
        names.append(name)
        values.append(value)
    wasi.env = list(zip(names, values))
    for item in opts.dir:
        host, sep, guest = item.partition("::")
        if not sep:
            raise SystemExit(f"wasirun: --dir {item!r}: expected HOST::GUEST[:ro]")
        mutable = True
        if guest.endswith(":ro"):
            guest, mutable = guest[:-3], False
        wasi.preopen_dir(host, guest, mutable)
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    if opts.stdin:
        wasi.stdin_file = opts.stdin
    else:
        wasi.inherit_stdin()

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    define_wasgi_stubs(linker, module)
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    if opts.invoke:
        calls = (["_initialize"] if exports.get("_initialize") else []) + opts.invoke
    else:
        calls = ["_start"]
    try:
        for name in calls:
            exports[name](store)
    except wasmtime.ExitTrap as e:
        return e.code
    return 0


def main():
    opts = parse(sys.argv[1:])
    result = {}

    def target():
        try:
            result["code"] = run(opts)
        except wasmtime.Trap as e:
            print(f"wasirun: the guest trapped: {e}", file=sys.stderr)
            result["code"] = 134
        except BaseException as e:  # reported by the main thread
            result["error"] = e

    threading.stack_size(THREAD_STACK)
    t = threading.Thread(target=target, name="guest")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    sys.stdout.flush()
    return result["code"]


if __name__ == "__main__":
    sys.exit(main())
