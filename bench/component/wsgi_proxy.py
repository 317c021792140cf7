"""A small WSGI -> wasi:http adapter, for the `wasmtime serve` peer row of
bench/interpreters: componentize-py builds it, with examples/hello's Flask app,
into a wasi:http/proxy component. The app is imported when the component is
built (componentize-py snapshots the interpreter after the import), as wasgi's
snapshot does; `wasmtime serve` then runs each request in a fresh instance.
"""

import encodings.idna  # noqa: F401  werkzeug encodes the host with it; componentize-py bundles only what the build imports
import io
import sys

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import types
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam

from app import app as application

METHODS = {
    types.Method_Get: "GET", types.Method_Head: "HEAD", types.Method_Post: "POST",
    types.Method_Put: "PUT", types.Method_Delete: "DELETE", types.Method_Connect: "CONNECT",
    types.Method_Options: "OPTIONS", types.Method_Trace: "TRACE", types.Method_Patch: "PATCH",
}


def _read_body(request):
    body = request.consume()
    stream = body.stream()
    chunks = []
    try:
        while True:
            chunks.append(stream.blocking_read(65536))
    except Exception:  # StreamError_Closed: the end of the body
        pass
    stream.__exit__(None, None, None)
    types.IncomingBody.finish(body)
    return b"".join(chunks)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        m = request.method()
        method = m.value if isinstance(m, types.Method_Other) else METHODS[type(m)]
        path, _, query = (request.path_with_query() or "/").partition("?")
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": True,
        }
        for name, value in request.headers().entries():
            key = name.upper().replace("-", "_")
            value = value.decode("latin-1")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ["HTTP_" + key] = value
        environ["wsgi.input"] = io.BytesIO(_read_body(request))

        started = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]
            return lambda data: None

        result = application(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        response = OutgoingResponse(Fields.from_list(
            [(k.lower(), v.encode("latin-1")) for k, v in headers if k.lower() != "content-length"]
            + [("content-length", str(len(data)).encode())]))
        response.set_status_code(int(status.split()[0]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        try:
            for i in range(0, len(data), 4096):
                stream.blocking_write_and_flush(data[i:i + 4096])
        except Exception:  # StreamError_Closed: the client went away (wrk stopping)
            return
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
