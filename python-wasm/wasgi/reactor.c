/* wasgi's entry points for a pre-initialised interpreter.
 *
 * python-reactor.wasm is linked from the same objects as python.wasm, with
 * this file in place of Programs/python.c and as a WASI reactor: it has no
 * `_start` that runs main() and exits, only exports the host calls in turn.
 *
 *   _initialize   wasi-libc's constructors (the host, or wizer, calls it first)
 *   wasgi_init    reads the WASI arguments as `python` would (`-s -c BOOT ...`),
 *                 initialises the interpreter and runs the -c command, which
 *                 is the bridge: it loads the app and returns without serving
 *   wasgi_serve   runs wasgi_bridge.serve(): ready, then the request loop
 *
 * wasgi snapshots the instance after wasgi_init (wasmtime-wizer), so every
 * instance of a group starts at wasgi_serve with the app already imported.
 * An error in either step ends the guest the way python would: the traceback
 * on stderr and exit status 1 (SystemExit's own status for SystemExit).
 */

#include "Python.h"

#include <stdio.h>
#include <stdlib.h>
#include <wasi/api.h>

static void
exit_on(PyStatus status)
{
    if (PyStatus_Exception(status)) {
        Py_ExitStatusException(status);
    }
}

__attribute__((export_name("wasgi_init")))
void
wasgi_init(void)
{
    __wasi_size_t argc = 0, size = 0;
    if (__wasi_args_sizes_get(&argc, &size) != 0) {
        fputs("wasgi_init: cannot read the WASI arguments\n", stderr);
        exit(2);
    }
    char **argv = calloc(argc + 1, sizeof(char *));
    char *buf = malloc(size ? size : 1);
    if (argv == NULL || buf == NULL
            || __wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0) {
        fputs("wasgi_init: cannot read the WASI arguments\n", stderr);
        exit(2);
    }

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    exit_on(PyConfig_SetBytesArgv(&config, (Py_ssize_t)argc, argv));
    /* Parses the arguments here, so config.run_command is ours to run. */
    exit_on(PyConfig_Read(&config));
    exit_on(Py_InitializeFromConfig(&config));
    if (config.run_command == NULL) {
        fputs("wasgi_init: expected `python -c COMMAND ...`\n", stderr);
        exit(2);
    }
    PyObject *command = PyUnicode_FromWideChar(config.run_command, -1);
    const char *text = command ? PyUnicode_AsUTF8(command) : NULL;
    if (text == NULL) {
        PyErr_Print();
        exit(1);
    }
    /* Prints the traceback and exits on an error; SystemExit exits with its code. */
    if (PyRun_SimpleString(text) != 0) {
        exit(1);
    }
    Py_DECREF(command);
    PyConfig_Clear(&config);
    free(argv);
    free(buf);
}

__attribute__((export_name("wasgi_serve")))
void
wasgi_serve(void)
{
    int failed = PyRun_SimpleString("import wasgi_bridge\nwasgi_bridge.serve()\n");
    exit(failed ? 1 : 0);
}
