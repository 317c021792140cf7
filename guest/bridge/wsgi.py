# ---------------------------------------------------------------- one request


class Input:
    """wsgi.input: the request body, fetched from the host as the app reads it."""

    __slots__ = ("_remaining", "_buf", "_eof", "_transport")

    def __init__(self, length, transport):
        # None: read until the host says the body ended (chunked uploads).
        self._remaining = length
        self._transport = transport
        self._buf = b""
        self._eof = length == 0

    def _fetch(self, want):
        """Ask the host for up to `want` bytes; False at the end of the body."""
        if self._eof:
            return False
        if self._remaining is not None:
            want = min(want, self._remaining)
            if want <= 0:
                self._eof = True
                return False
        self._transport.send((K_READ, min(want, READ_CHUNK).to_bytes(4, "big")))
        kind, payload = self._transport.read_frame()
        if kind == K_BODY:
            if not payload:
                self._eof = True
                return False
            if self._remaining is not None:
                self._remaining -= len(payload)
            self._buf += payload
            return True
        if kind == K_BODY_ERROR:
            self._eof = True
            raise RequestBodyError(f"request data read error: {payload.decode('utf-8', 'replace')}")
        raise ProtocolError(f"expected a body frame, got {kind!r}")

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fetch(READ_CHUNK):
                pass
            data, self._buf = self._buf, b""
            return data
        while len(self._buf) < size and self._fetch(size - len(self._buf)):
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size=-1):
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                end = nl + 1
                break
            if 0 <= (size if size is not None else -1) <= len(self._buf):
                end = size
                break
            if not self._fetch(READ_CHUNK):
                end = len(self._buf)
                break
        if size is not None and 0 <= size < end:
            end = size
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self):
        pass


class FileWrapper:
    """wsgi.file_wrapper: iterate a file-like object in blocks."""

    def __init__(self, filelike, blksize=MAX_DATA):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


import re

# RFC 9110 token characters for header names; values may hold any latin-1
# character but CR, LF and NUL.
_header_name_ok = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
_header_value_bad = re.compile(r"[\r\n\0]|[^\x00-\xff]").search


# Header names that passed _check_header. An app sends the same few names in
# every response: each is matched by the regex once, then found here. Bounded,
# since the names are the app's.
_valid_names = set()


def _check_header(name, value):
    if type(name) is not str or type(value) is not str:
        raise TypeError(f"header name and value must be str, got {name!r}: {value!r}")
    if not _header_name_ok(name):
        raise ValueError(f"invalid header name {name!r}")
    bad = _header_value_bad(value)
    if bad:
        if bad.group() in "\r\n\0":
            raise ValueError(f"header {name!r} contains a control character (CR, LF or NUL)")
        raise ValueError(f"header {name!r} is not latin-1 encodable (PEP 3333)")


class Response:
    """One request's response side: start_response, write() and the body frames."""

    __slots__ = ("status", "headers", "sent", "head_only", "pending", "unacked_bytes",
                 "unacked_frames", "has_length", "transport")

    def __init__(self, head_only, transport):
        self.status = None
        self.headers = None
        self.sent = False  # status and headers have gone to the host
        self.head_only = head_only
        self.pending = []  # (kind, payload) frames not yet sent
        self.unacked_bytes = 0
        self.unacked_frames = 0
        self.has_length = False  # the app gave a Content-Length
        self.transport = transport

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"status must be str, got {type(status).__name__}")
        if len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"status must look like '200 OK', got {status!r}")
        # Printable ASCII holds no CR, LF or NUL and is latin-1: no regex needed.
        if not (status.isascii() and status.isprintable()) and _header_value_bad(status):
            raise ValueError(f"status {status!r} contains CR, LF, NUL or non-latin-1 characters")
        if type(headers) is not list:
            raise TypeError(f"headers must be a list, got {type(headers).__name__}")
        if len(headers) > MAX_HEADERS:
            raise ValueError(f"{len(headers)} response headers: wasgi passes at most {MAX_HEADERS}")
        has_length = False
        size = 0
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"each header must be a (name, value) tuple, got {item!r}")
            name, value = item
            # A name checked before and a printable ASCII value (the usual
            # header) pass without a regex; anything else gets every check.
            if (type(name) is not str or name not in _valid_names or type(value) is not str
                    or not (value.isascii() and value.isprintable())):
                _check_header(name, value)
                if len(_valid_names) < 256:
                    _valid_names.add(name)
            size += len(name) + len(value) + 2
            if not has_length and len(name) == 14 and name.lower() == "content-length":
                has_length = True
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"the response headers take {size} bytes: wasgi passes at most {MAX_HEADER_BYTES}")
        self.status = status
        self.headers = headers
        self.has_length = has_length
        return self.write

    def _head_frame(self):
        parts = [self.status]
        for name, value in self.headers:
            parts.append(name)
            parts.append(value)
        return (K_START, "\0".join(parts).encode("latin-1"))

    def add_content_length(self, length):
        if not self.has_length:
            self.headers.append(("Content-Length", str(length)))
            self.has_length = True

    def _ensure_head(self):
        if not self.sent:
            if self.status is None:
                raise AssertionError("the application sent body data before calling start_response()")
            self.pending.append(self._head_frame())
            self.sent = True

    def write(self, data, flush=True):
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError(f"the application must produce bytes, not {type(data).__name__}")
        if not self.sent:
            self._ensure_head()
        if self.head_only or not data:
            return
        if len(data) <= MAX_DATA:
            chunks = (data,)
        else:
            view = memoryview(data)
            chunks = [view[i:i + MAX_DATA] for i in range(0, len(data), MAX_DATA)]
        for chunk in chunks:
            self.pending.append((K_DATA, chunk))
            self.unacked_bytes += len(chunk)
            self.unacked_frames += 1
            if self.unacked_bytes >= ACK_BYTES or self.unacked_frames >= ACK_FRAMES:
                self.flush()
                self.unacked_bytes = self.unacked_frames = 0
                kind, _ = self.transport.read_frame()
                if kind == K_CANCEL:
                    raise ClientGone()
                if kind != K_CONTINUE:
                    raise ProtocolError(f"expected K or C, got {kind!r}")
        if flush:
            self.flush()

    def flush(self):
        if self.pending:
            self.transport.send(*self.pending)
            self.pending = []


def _format_exc(e):
    import traceback

    return "".join(traceback.format_exception(e))


def _request_label(environ):
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    qs = environ.get("QUERY_STRING")
    label = f"{environ.get('REQUEST_METHOD', '?')} {path}{'?' + qs if qs else ''}"
    # The path is the client's, decoded (%0D%0A is CR LF): one line in the log.
    return label if label.isprintable() else label.encode("unicode_escape").decode("latin-1")


# The environ keys that are the same for every request.
_WSGI_STATIC = {
    "wsgi.version": (1, 0),
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.file_wrapper": FileWrapper,
    "wsgi.input_terminated": True,
}


def handle(app, payload, errors, transport):
    """One request: `payload` is the Q frame's environ; the response goes
    out through `transport`."""
    it = iter(payload.decode("latin-1").split("\0"))
    environ = dict(zip(it, it))
    environ.update(_WSGI_STATIC)
    length = environ.get("CONTENT_LENGTH")
    environ["wsgi.input"] = Input(int(length) if length else None, transport)
    environ["wsgi.errors"] = errors
    response = Response(environ["REQUEST_METHOD"] == "HEAD", transport)

    # The frame that ends this request. It goes out only after close() and
    # the log flushes, when the bridge has nothing left to do but read the
    # next request: the host stops driving the guest once it has it.
    last = _END_FRAME
    result = None
    try:
        result = app(environ, response.start_response)
        if type(result) in (list, tuple) and response.status is not None and not response.sent:
            # The whole body is known: give it a length and send it in one write.
            if len(result) == 1 and type(body := result[0]) is bytes and len(body) < ACK_BYTES:
                # The usual body, one chunk: add_content_length() and write()
                # inlined (one frame, under the flow-control window: no wait).
                if not response.has_length:
                    response.headers.append(("Content-Length", str(len(body))))
                    response.has_length = True
                response.pending.append(response._head_frame())
                response.sent = True
                if body and not response.head_only:
                    response.pending.append((K_DATA, body))
                    response.unacked_bytes += len(body)
                    response.unacked_frames += 1
            else:
                if not response.has_length and all(type(c) is bytes for c in result):
                    response.add_content_length(sum(map(len, result)))
                for chunk in result:
                    response.write(chunk, False)
        else:
            for chunk in result:
                if chunk:
                    response.write(chunk)
                    if response.head_only:
                        break  # the head is out and HEAD sends no body: stop early
        if not response.sent:
            if response.status is None:
                raise AssertionError("the application returned without calling start_response()")
            response.add_content_length(0)
            response._ensure_head()
    except ClientGone:
        response.pending = []
    except (ProtocolError, SystemExit):
        raise
    except BaseException as e:
        label = _request_label(environ)
        if _from_request_body(e):
            # The host answers the client (400 for a malformed body) and logs
            # why; no traceback to send anyone hunting in the app.
            transport.log("warn", f"{label}: the app stopped on an unreadable request body: {e}")
        if not response.sent:
            if not _from_request_body(e):
                transport.log("error", f"Exception on {label}:\n{_format_exc(e)}")
            body = b"Internal Server Error\n"
            response.pending = [
                (K_START, b"\0".join([
                    b"500 Internal Server Error",
                    b"Content-Type", b"text/plain; charset=utf-8",
                    b"Content-Length", str(len(body)).encode(),
                ])),
            ]
            if not response.head_only:
                response.pending.append((K_DATA, body))
        else:
            if not _from_request_body(e):
                transport.log("error", f"Exception on {label} after the response started:\n{_format_exc(e)}")
            response.pending = []
            last = (K_FAILED, str(e).encode("utf-8", "backslashreplace"))
    close = getattr(result, "close", None)
    if close is None:
        # Nothing left to run: the end goes out with the body, in one write.
        response.pending.append(last)
        last = None
    response.flush()
    if close is not None:
        try:
            close()
        except Exception as e:
            transport.log("error", f"close() of the response iterable raised on {_request_label(environ)}:\n{_format_exc(e)}")
    if _stdout._partial:
        _stdout.flush()
    if _stderr._partial:
        _stderr.flush()
    if last is not None:
        transport.send(last)
