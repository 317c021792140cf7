# ---------------------------------------------------------------- the log stream


class LogStream:
    """Text stream that sends whole lines to the host log (fd 2).

    It stands in for sys.stdout, sys.stderr and wsgi.errors, so print() and
    logging output land in the log and never in a response."""

    encoding = "utf-8"
    errors = "backslashreplace"
    newlines = None
    closed = False

    def __init__(self, name):
        self.name = name
        self._partial = []

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if "\n" in s:
            head, _, rest = s.rpartition("\n")
            self._partial.append(head)
            self._partial.append("\n")
            text = "".join(self._partial)
            self._partial = [rest] if rest else []
            _write_all(_LOG_FD, text.encode("utf-8", "backslashreplace"))
        elif s:
            self._partial.append(s)
            if sum(map(len, self._partial)) > 8192:
                self.flush()
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._partial:
            text = "".join(self._partial) + "\n"
            self._partial = []
            _write_all(_LOG_FD, text.encode("utf-8", "backslashreplace"))

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def fileno(self):
        raise OSError(f"{self.name} is the wasgi log and has no file descriptor")

    @property
    def buffer(self):
        return _LogBuffer(self)


_stdout = LogStream("stdout")
_stderr = LogStream("stderr")


class RestrictedStdout(LogStream):
    """sys.stdout under restrict_stdout = true: any write raises, as under
    mod_wsgi's `WSGIRestrictStdout On`, so code that prints is found."""

    def write(self, s):
        raise OSError(
            "sys.stdout access restricted by wasgi (restrict_stdout = true, like mod_wsgi's "
            "WSGIRestrictStdout On): write to sys.stderr, environ['wsgi.errors'] or use logging, "
            "or set restrict_stdout = false to send print() to the log"
        )


class _LogBuffer:
    """Binary face of a LogStream (sys.stdout.buffer.write(b'...'))."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, b):
        self._stream.write(bytes(b).decode("utf-8", "backslashreplace"))
        return len(b)

    def flush(self):
        self._stream.flush()
