/* _wasgi: the bridge's direct line to the wasgi host.
 *
 * Built into wasgi's own CPython 3.13 WASI build (python-wasm/build, step
 * "wasgi-module") as a static built-in module. The bridge (guest/bridge/)
 * uses it when `import _wasgi` works; otherwise (the pinned 3.12 build) it
 * keeps talking through frames on stdin/stdout. The frames are the same
 * either way (host/src/protocol/frames.rs); only the transport differs: no
 * encoding, no stdio, no buffering in Python.
 *
 * The ABI is wasm imports from module "wasgi", provided by the host. Their
 * names, types and contracts are written once, in HOST_CALLS of
 * host/src/sandbox/hostcalls.rs (frames and log) and NET_CALLS of
 * host/src/sandbox/net.rs (outbound connections); a test there checks the
 * declarations below against those tables. Pointers are offsets into this
 * module's linear memory. The net_* calls return a negative WASI errno
 * (wasi-libc's E* values) on failure, raised here as OSError.
 *
 * recv and send may wait (the host parks the guest, as it would on a full
 * or empty pipe); read and log never do. Only the bridge's serve loop calls
 * recv; logging may run at any time, also while the app is imported.
 *
 * Python API:
 *   _wasgi.recv() -> (kind: bytes of length 1, payload: bytes), or None
 *                    when the host has closed the channel
 *   _wasgi.send(kind: bytes of length 1, payload: bytes-like) -> None;
 *                    BrokenPipeError when the host has closed the channel
 *   _wasgi.log(level: int, message: bytes-like) -> None
 *   _wasgi.immortalize(objects: list) -> int
 *                    makes every object of the list, and everything reachable
 *                    from them, immortal (see below); returns how many it made so
 */

#include "Python.h"

#include <errno.h>
#include <stdint.h>

#define WASGI_IMPORT(name) __attribute__((import_module("wasgi"), import_name(name)))

WASGI_IMPORT("recv") int64_t wasgi_recv(void);
WASGI_IMPORT("read") int32_t wasgi_read(void *buf, uint32_t len);
WASGI_IMPORT("send") int32_t wasgi_send(uint32_t kind, const void *buf, uint32_t len);
WASGI_IMPORT("log") void wasgi_log(uint32_t level, const void *buf, uint32_t len);
WASGI_IMPORT("net_resolve") int32_t wasgi_net_resolve(const void *name, uint32_t name_len, void *out, uint32_t out_cap);
WASGI_IMPORT("net_connect") int32_t wasgi_net_connect(const void *addr, uint32_t addr_len, uint32_t port, int32_t timeout_ms);
WASGI_IMPORT("net_send") int32_t wasgi_net_send(int32_t handle, const void *buf, uint32_t len, int32_t timeout_ms);
WASGI_IMPORT("net_recv") int32_t wasgi_net_recv(int32_t handle, void *buf, uint32_t len, uint32_t flags, int32_t timeout_ms);
WASGI_IMPORT("net_poll") int32_t wasgi_net_poll(void *entries, uint32_t count, int32_t timeout_ms);
WASGI_IMPORT("net_close") int32_t wasgi_net_close(int32_t handle, uint32_t how);
WASGI_IMPORT("net_name") int32_t wasgi_net_name(int32_t handle, uint32_t peer, void *out, uint32_t out_cap);

static PyObject *
wasgi_recv_impl(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    int64_t got = wasgi_recv();
    if (got < 0) {
        Py_RETURN_NONE;
    }
    char kind = (char)(got >> 32);
    uint32_t len = (uint32_t)(got & 0xffffffff);
    PyObject *payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (payload == NULL) {
        return NULL;
    }
    if (len > 0 && wasgi_read(PyBytes_AS_STRING(payload), len) != 0) {
        Py_DECREF(payload);
        PyErr_SetString(PyExc_RuntimeError, "wasgi.read refused the announced frame");
        return NULL;
    }
    PyObject *kind_bytes = PyBytes_FromStringAndSize(&kind, 1);
    if (kind_bytes == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, kind_bytes, payload);
    Py_DECREF(kind_bytes);
    Py_DECREF(payload);
    return result;
}

static PyObject *
wasgi_send_impl(PyObject *module, PyObject *args)
{
    char kind;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "cy*:send", &kind, &data)) {
        return NULL;
    }
    if ((size_t)data.len > UINT32_MAX) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_OverflowError, "a frame payload must be under 4 GiB");
        return NULL;
    }
    int32_t rc = wasgi_send((uint8_t)kind, data.buf, (uint32_t)data.len);
    PyBuffer_Release(&data);
    if (rc != 0) {
        PyErr_SetString(PyExc_BrokenPipeError, "the wasgi host closed the channel");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
wasgi_log_impl(PyObject *module, PyObject *args)
{
    int level;
    Py_buffer message;
    if (!PyArg_ParseTuple(args, "iy*:log", &level, &message)) {
        return NULL;
    }
    if (level < 0 || (size_t)message.len > UINT32_MAX) {
        PyBuffer_Release(&message);
        PyErr_SetString(PyExc_ValueError, "log level must be 0 (error), 1 (warn) or 2 (info)");
        return NULL;
    }
    wasgi_log((uint32_t)level, message.buf, (uint32_t)message.len);
    PyBuffer_Release(&message);
    Py_RETURN_NONE;
}

/* Immortal objects (PEP 683) are never counted: Py_INCREF and Py_DECREF
 * leave their memory alone. Just before a snapshot the bridge makes what the
 * app's import built immortal (after gc.collect(), starting from the objects
 * of gc.get_objects(), then gc.freeze()), so an instance started from the
 * snapshot does not write to a page of that heap merely by using an object:
 * the pages stay shared with the snapshot, an instance's private memory is
 * what it allocates, and under isolation = "request" each request dirties
 * (and the host resets) only those pages. Everything reachable is made so,
 * code objects' constants and names included (a code object is not tracked
 * by the gc, and LOAD_CONST counts its constants). Such objects are never
 * freed: they are the app's import-time state, which lives as long as the
 * instance does. */
struct immortalizing {
    PyObject *skip;     /* the list of objects itself: it is freed afterwards */
    PyObject **todo;    /* made immortal, referents not visited yet */
    Py_ssize_t len, cap;
    Py_ssize_t count;
};

static int
immortalize_one(PyObject *op, void *arg)
{
    struct immortalizing *state = arg;
    if (op == NULL || op == state->skip || _Py_IsImmortal(op)) {
        return 0;
    }
    if (state->len == state->cap) {
        Py_ssize_t cap = state->cap ? state->cap * 2 : 4096;
        PyObject **todo = PyMem_RawRealloc(state->todo, (size_t)cap * sizeof(PyObject *));
        if (todo == NULL) {
            return -1;
        }
        state->todo = todo;
        state->cap = cap;
    }
    Py_SET_REFCNT(op, _Py_IMMORTAL_REFCNT);
    state->count++;
    state->todo[state->len++] = op;
    return 0;
}

static int
immortalize_referents(PyObject *op, struct immortalizing *state)
{
    if (PyCode_Check(op)) {
        PyCodeObject *co = (PyCodeObject *)op;
        PyObject *parts[] = {co->co_consts, co->co_names, co->co_exceptiontable,
                             co->co_localsplusnames, co->co_localspluskinds,
                             co->co_filename, co->co_name, co->co_qualname, co->co_linetable};
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            if (immortalize_one(parts[i], state) < 0) {
                return -1;
            }
        }
        return 0;
    }
    traverseproc traverse = Py_TYPE(op)->tp_traverse;
    if (traverse != NULL && PyType_IS_GC(Py_TYPE(op))) {
        return traverse(op, immortalize_one, state);
    }
    return 0;
}

static PyObject *
wasgi_immortalize_impl(PyObject *module, PyObject *objects)
{
    if (!PyList_CheckExact(objects)) {
        PyErr_SetString(PyExc_TypeError, "immortalize() takes the list gc.get_objects() returns");
        return NULL;
    }
    struct immortalizing state = {objects, NULL, 0, 0, 0};
    int failed = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects) && !failed; i++) {
        failed = immortalize_one(PyList_GET_ITEM(objects, i), &state) < 0;
        while (state.len > 0 && !failed) {
            failed = immortalize_referents(state.todo[--state.len], &state) < 0;
        }
    }
    PyMem_RawFree(state.todo);
    if (failed) {
        return PyErr_NoMemory();
    }
    return PyLong_FromSsize_t(state.count);
}

/* Outbound connections, made by the host (host/src/sandbox/net.rs) for the
 * bridge's socket module (guest/bridge/netsock.py). Each function is a thin
 * wrapper: the host checks the group's connect grants and does the I/O; a
 * negative result is a WASI errno, raised as the matching OSError subclass.
 * Timeouts are milliseconds: -1 waits without limit, 0 never waits. */

static PyObject *
net_error(int32_t rc)
{
    errno = -rc;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* Keeps the timeout inside an i32 of milliseconds (about 24 days). */
static int
net_timeout(PyObject *arg, int32_t *out)
{
    long ms = PyLong_AsLong(arg);
    if (ms == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = ms < -1 ? -1 : (ms > INT32_MAX ? INT32_MAX : (int32_t)ms);
    return 0;
}

static PyObject *
wasgi_net_resolve_impl(PyObject *module, PyObject *args)
{
    Py_buffer name;
    if (!PyArg_ParseTuple(args, "y*:net_resolve", &name)) {
        return NULL;
    }
    char out[2048];
    int32_t rc = wasgi_net_resolve(name.buf, (uint32_t)name.len, out, sizeof(out));
    PyBuffer_Release(&name);
    if (rc < 0) {
        return net_error(rc);
    }
    return PyBytes_FromStringAndSize(out, rc);
}

static PyObject *
wasgi_net_connect_impl(PyObject *module, PyObject *args)
{
    Py_buffer addr;
    unsigned int port;
    PyObject *timeout_arg;
    int32_t timeout_ms;
    if (!PyArg_ParseTuple(args, "y*IO:net_connect", &addr, &port, &timeout_arg)) {
        return NULL;
    }
    if (net_timeout(timeout_arg, &timeout_ms) < 0) {
        PyBuffer_Release(&addr);
        return NULL;
    }
    int32_t rc = wasgi_net_connect(addr.buf, (uint32_t)addr.len, port, timeout_ms);
    PyBuffer_Release(&addr);
    if (rc < 0) {
        return net_error(rc);
    }
    return PyLong_FromLong(rc);
}

static PyObject *
wasgi_net_send_impl(PyObject *module, PyObject *args)
{
    int handle;
    Py_buffer data;
    PyObject *timeout_arg;
    int32_t timeout_ms;
    if (!PyArg_ParseTuple(args, "iy*O:net_send", &handle, &data, &timeout_arg)) {
        return NULL;
    }
    if (net_timeout(timeout_arg, &timeout_ms) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    uint32_t len = data.len > (1 << 30) ? (1 << 30) : (uint32_t)data.len;
    int32_t rc = wasgi_net_send(handle, data.buf, len, timeout_ms);
    PyBuffer_Release(&data);
    if (rc < 0) {
        return net_error(rc);
    }
    return PyLong_FromLong(rc);
}

static PyObject *
wasgi_net_recv_into_impl(PyObject *module, PyObject *args)
{
    int handle;
    Py_buffer buf;
    Py_ssize_t nbytes;
    unsigned int flags;
    PyObject *timeout_arg;
    int32_t timeout_ms;
    if (!PyArg_ParseTuple(args, "iw*nIO:net_recv_into", &handle, &buf, &nbytes, &flags, &timeout_arg)) {
        return NULL;
    }
    if (net_timeout(timeout_arg, &timeout_ms) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (nbytes <= 0 || nbytes > buf.len) {
        nbytes = buf.len;
    }
    uint32_t len = nbytes > (1 << 30) ? (1 << 30) : (uint32_t)nbytes;
    int32_t rc = wasgi_net_recv(handle, buf.buf, len, flags, timeout_ms);
    PyBuffer_Release(&buf);
    if (rc < 0) {
        return net_error(rc);
    }
    return PyLong_FromLong(rc);
}

static PyObject *
wasgi_net_poll_impl(PyObject *module, PyObject *args)
{
    Py_buffer entries;
    PyObject *timeout_arg;
    int32_t timeout_ms;
    if (!PyArg_ParseTuple(args, "w*O:net_poll", &entries, &timeout_arg)) {
        return NULL;
    }
    if (net_timeout(timeout_arg, &timeout_ms) < 0 || entries.len % 8 != 0) {
        PyBuffer_Release(&entries);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "net_poll takes 8 bytes per entry");
        }
        return NULL;
    }
    int32_t rc = wasgi_net_poll(entries.buf, (uint32_t)(entries.len / 8), timeout_ms);
    PyBuffer_Release(&entries);
    if (rc < 0) {
        return net_error(rc);
    }
    return PyLong_FromLong(rc);
}

static PyObject *
wasgi_net_close_impl(PyObject *module, PyObject *args)
{
    int handle;
    unsigned int how;
    if (!PyArg_ParseTuple(args, "iI:net_close", &handle, &how)) {
        return NULL;
    }
    int32_t rc = wasgi_net_close(handle, how);
    if (rc < 0) {
        return net_error(rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
wasgi_net_name_impl(PyObject *module, PyObject *args)
{
    int handle;
    int peer;
    if (!PyArg_ParseTuple(args, "ip:net_name", &handle, &peer)) {
        return NULL;
    }
    char out[512];
    int32_t rc = wasgi_net_name(handle, (uint32_t)peer, out, sizeof(out));
    if (rc < 0) {
        return net_error(rc);
    }
    return PyBytes_FromStringAndSize(out, rc);
}

static PyMethodDef wasgi_methods[] = {
    {"recv", wasgi_recv_impl, METH_NOARGS,
     "recv() -> (kind, payload) of the host's next frame, or None when the host closed the channel."},
    {"send", wasgi_send_impl, METH_VARARGS,
     "send(kind, payload): one frame to the host (kind: one byte)."},
    {"log", wasgi_log_impl, METH_VARARGS,
     "log(level, message): a log record; level 0 error, 1 warn, 2 info; message UTF-8 bytes."},
    {"immortalize", wasgi_immortalize_impl, METH_O,
     "immortalize(objects): make the objects and all they reach immortal; returns how many were made so."},
    {"net_resolve", wasgi_net_resolve_impl, METH_VARARGS,
     "net_resolve(name) -> bytes: the addresses a granted name resolves to, one per line."},
    {"net_connect", wasgi_net_connect_impl, METH_VARARGS,
     "net_connect(addr, port, timeout_ms) -> handle: a connection the host made (addr: an IP or unix:/path)."},
    {"net_send", wasgi_net_send_impl, METH_VARARGS,
     "net_send(handle, data, timeout_ms) -> bytes sent."},
    {"net_recv_into", wasgi_net_recv_into_impl, METH_VARARGS,
     "net_recv_into(handle, buffer, nbytes, flags, timeout_ms) -> bytes received (0 at end of stream)."},
    {"net_poll", wasgi_net_poll_impl, METH_VARARGS,
     "net_poll(entries, timeout_ms) -> how many are ready; entries: (i32 handle, u16 events, u16 revents) each."},
    {"net_close", wasgi_net_close_impl, METH_VARARGS,
     "net_close(handle, how): shut down reading (0), writing (1) or both (2), or close (3)."},
    {"net_name", wasgi_net_name_impl, METH_VARARGS,
     "net_name(handle, peer) -> bytes: the local (peer false) or remote address as 'ip port' or the socket path."},
    {NULL, NULL, 0, NULL},
};

static int
wasgi_exec(PyObject *module)
{
    return PyModule_AddIntConstant(module, "ABI_VERSION", 2);
}

static PyModuleDef_Slot wasgi_slots[] = {
    {Py_mod_exec, wasgi_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

static struct PyModuleDef wasgi_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_wasgi",
    .m_doc = "Frames to and from the wasgi host, through host calls (see python-wasm/wasgi/_wasgimodule.c).",
    .m_size = 0,
    .m_methods = wasgi_methods,
    .m_slots = wasgi_slots,
};

PyMODINIT_FUNC
PyInit__wasgi(void)
{
    return PyModuleDef_Init(&wasgi_module);
}
