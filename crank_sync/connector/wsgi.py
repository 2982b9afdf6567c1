"""Serving tunnelled requests from an in-process WSGI application (PEP 3333), with no local port.

The connector's workers call :meth:`WsgiTarget.send` on their own thread. ``send()`` builds the
environ, runs the application until it has chosen its response head and produced its first body
chunk (or finished), and returns a :class:`WsgiResponse` that the worker drains with ``read1()``
on the same thread, so a generator is resumed only when the worker can send what it yields.

Bounded memory, both ways: ``wsgi.input`` pulls the tunnelled body one chunk at a time, and the
response iterable is consumed lazily. Two documented limits: data an application passes to the
legacy ``write()`` callable is spooled (to a temporary file past ``write_buffer`` bytes) and sent
once the application returns; and whatever request body the application has not read when it
returns its first chunk is read and discarded then, as an HTTP target gets the whole body before
it answers.
"""
from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any
from urllib.parse import unquote_to_bytes, urlsplit

import urllib3

from ..errors import CrankError
from ..protocol import RequestHead
from .target import Cancel

log = logging.getLogger(__name__)
app_log = logging.getLogger(__name__ + ".app")  # wsgi.errors

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WsgiApp = Callable[..., Iterable[bytes]]

_STATUS_RE = re.compile(r"^(\d{3})(?: (.*))?$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")
_NO_BODY_STATUS = (204, 304)
_ERROR_BODY = b"Internal Server Error\n"


class ApplicationError(CrankError, urllib3.exceptions.ProtocolError):
    """The application failed after its response started: the worker aborts the stream.

    A ``urllib3`` ``ProtocolError`` so that workers treat it exactly like an HTTP target that
    died mid-body (v1 close 1011, v3 RST_STREAM).
    """

    status = 502


class ClientDisconnected(OSError):
    """Raised to the application by ``wsgi.input`` when the request body cannot be read."""


def _native(text: str) -> str:
    """A WSGI native string: each byte as one latin-1 character (PEP 3333, "bytes as str")."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _percent_decode(path: str) -> str:
    return unquote_to_bytes(path).decode("latin-1")


def _split_host(host: str, scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host header (``[::1]:8080``, ``example.com``)."""
    default = "443" if scheme == "https" else "80"
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            rest = host[end + 1:]
            port = rest[1:] if rest.startswith(":") and rest[1:].isdigit() else default
            return host[1:end], port
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, port
    return host, default


def _forwarded_params(value: str) -> dict[str, str]:
    """The parameters of the last element of a ``Forwarded`` header (RFC 7239)."""
    element = _split_unquoted(value, ",")[-1]
    params: dict[str, str] = {}
    for pair in _split_unquoted(element, ";"):
        name, sep, val = pair.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        params[name.strip().lower()] = val
    return params


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _node(value: str) -> tuple[str, str | None]:
    """Address and port of a Forwarded ``for=`` node: ``1.2.3.4:5``, ``[::1]:5``, ``unknown``."""
    if value.startswith("["):
        addr, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return addr, port
    addr, sep, port = value.partition(":")
    return addr, (port if sep else None)


class RequestInput:
    """``wsgi.input``: the request body, pulled from the tunnel only as the application reads.

    At most one tunnel chunk (plus what a ``readline`` is looking through) is held at a time.
    When the tunnel fails, the application sees :class:`ClientDisconnected` (an ``OSError``, as
    frameworks expect from a socket), and :attr:`error` keeps the original for the worker.
    """

    def __init__(self, body: Iterable[bytes] | None) -> None:
        self._chunks: Iterator[bytes] = iter(body) if body is not None else iter(())
        self._buf = bytearray()
        self._eof = body is None
        self.error: BaseException | None = None
        self.bytes_read = 0

    def _fill(self) -> bool:
        """Pull one more chunk into the buffer; False at the end of the body."""
        while not self._eof:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                return False
            except Exception as err:
                self._eof = True
                self.error = err
                raise ClientDisconnected(f"request body could not be read: {err!r}") from err
            if chunk:
                self._buf += chunk
                self.bytes_read += len(chunk)
                return True
        if self.error is not None:
            raise ClientDisconnected("request body could not be read") from self.error
        return False

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end); everything left when ``size`` < 0."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buf))
        while len(self._buf) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end != -1:
                n = end + 1
                return self._take(n if limit is None else min(n, limit))
            if limit is not None and len(self._buf) >= limit:
                return self._take(limit)
            start = len(self._buf)
            if not self._fill():
                return self._take(len(self._buf) if limit is None else limit)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self) -> int:
        """Read and discard the rest of the body; returns how many bytes that was."""
        dropped = len(self._buf)
        self._buf.clear()
        while self._fill():
            dropped += len(self._buf)
            self._buf.clear()
        return dropped


class _ErrorStream:
    """``wsgi.errors``: text the application writes goes to the ``crank_sync...app`` logger."""

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            app_log.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            app_log.error("%s", self._pending)
            self._pending = ""


class FileWrapper:
    """``wsgi.file_wrapper``: a file served in ``blksize`` blocks; ``read1`` reads it directly."""

    def __init__(self, filelike: IO[bytes], blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.filelike.read(self.blksize)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class WsgiHeaders:
    """Response headers in the order the application gave them, duplicates kept."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for n, v in self._pairs if n.lower() == name.lower()), default)


def _check_response_head(status: str, headers: list[tuple[str, str]]) -> tuple[int, str]:
    if not isinstance(status, str):
        raise TypeError(f"WSGI status must be a str, got {type(status).__name__}")
    match = _STATUS_RE.match(status)
    if not match or _BAD_VALUE_RE.search(status):
        raise ValueError(f"invalid WSGI status {status!r}")
    for pair in headers:
        if not (isinstance(pair, tuple) and len(pair) == 2
                and isinstance(pair[0], str) and isinstance(pair[1], str)):
            raise TypeError(f"WSGI headers must be (str, str) tuples, got {pair!r}")
        if not _TOKEN_RE.match(pair[0]) or _BAD_VALUE_RE.search(pair[1]):
            raise ValueError(f"invalid response header {pair!r}")
    return int(match.group(1)), match.group(2) or ""


class _Call:
    """The ``start_response`` and ``write()`` side of one application call."""

    def __init__(self, write_buffer: int) -> None:
        self.status: tuple[int, str] | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False  # the head left with send(): exc_info can no longer replace it
        self.spool: Any = None  # SpooledTemporaryFile of write() data, made on first use
        self.late: list[bytes] = []  # write() from inside the iterable, after send()
        self._write_buffer = write_buffer

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent or self.spool is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        headers = list(headers)
        self.status = _check_response_head(status, headers)
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: spooled until the application returns."""
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() needs bytes, got {type(data).__name__}")
        if not data:
            return
        if self.sent:
            self.late.append(bytes(data))
            return
        if self.spool is None:
            self.spool = tempfile.SpooledTemporaryFile(max_size=self._write_buffer)
        self.spool.write(data)


def _close_quietly(result: object) -> None:
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # noqa: BLE001 - an app's close() must not take the worker down
        log.exception("WSGI application iterable close() failed")


class WsgiResponse:
    """The application's answer, shaped like the urllib3 response the workers read.

    ``read1()`` resumes the application's iterable lazily; ``close()`` and ``release_conn()``
    call the iterable's ``close()`` exactly once, whether the body completed, failed or the
    client went away.
    """

    status: int
    reason: str | None

    def __init__(self, call: _Call, result: Iterable[bytes], method: str) -> None:
        self._call = call
        self._result = result
        self._file = result.filelike if isinstance(result, FileWrapper) else None
        self._iter: Iterator[bytes] | None = None
        self._pending: list[bytes] = []
        self._done = False
        self._method = method
        self._sent = 0
        self.status = 0
        self.reason = ""
        self.headers = WsgiHeaders([])
        self._expected: int | None = None

    # -- used by WsgiTarget.send, on the worker thread --------------------------------------

    def _start(self) -> None:
        """Run the application up to its first body chunk, so its head is final."""
        if self._call.spool is None:
            first = self._pull(65536)
            if first:
                self._pending.append(first)
        if self._call.status is None:
            raise AssertionError("the WSGI application did not call start_response()")
        self.status, self.reason = self._call.status
        self.headers = WsgiHeaders(self._call.headers)
        length = self.headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            self._expected = int(length)
        if self._call.spool is not None:
            self._call.spool.seek(0)
        self._call.sent = True

    def _pull(self, amt: int) -> bytes:
        """The next non-empty chunk from the application, or b"" when it is exhausted."""
        if self._file is not None:
            return self._file.read(amt)
        if self._iter is None:
            self._iter = iter(self._result)
        for chunk in self._iter:
            if not isinstance(chunk, (bytes, bytearray)):
                raise TypeError(f"WSGI iterable yielded {type(chunk).__name__}, not bytes")
            if chunk:
                return bytes(chunk)
        return b""

    @property
    def _body_allowed(self) -> bool:
        return not (self._method == "HEAD" or self.status in _NO_BODY_STATUS
                    or self.status < 200)

    # -- the TargetResponse protocol ---------------------------------------------------------

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """Up to ``amt`` bytes of body as the application produces them; b"" at the end."""
        if self._done:
            return b""
        if not self._body_allowed:
            self._finish()
            return b""
        amt = amt if amt and amt > 0 else 65536
        try:
            data = self._next(amt)
        except Exception as err:
            log.exception("WSGI application failed mid-body")
            self._finish()
            raise ApplicationError(f"application failed mid-body: {err!r}") from err
        if self._expected is not None:
            room = self._expected - self._sent
            if len(data) > room:
                log.warning("WSGI application sent more than its Content-Length %d; truncated",
                            self._expected)
                data = data[:room]
                self._finish()
        if not data:
            self._finish()
            if self._expected is not None and self._sent < self._expected:
                raise ApplicationError(
                    f"application sent {self._sent} of {self._expected} bytes")
            return b""
        self._sent += len(data)
        return data

    def _next(self, amt: int) -> bytes:
        call = self._call
        if call.spool is not None:
            data = call.spool.read(amt)
            if data:
                return bytes(data)
            call.spool.close()
            call.spool = None
        if not self._pending:
            chunk = self._pull(amt)
            self._pending.extend(call.late)  # written while producing ``chunk``: goes first
            call.late.clear()
            if chunk:
                self._pending.append(chunk)
        if not self._pending:
            return b""
        data = self._pending.pop(0)
        if len(data) > amt:
            self._pending.insert(0, data[amt:])
            data = data[:amt]
        return data

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._pending.clear()
        if self._call.spool is not None:
            self._call.spool.close()
            self._call.spool = None
        _close_quietly(self._result)

    def close(self) -> None:
        self._finish()

    def release_conn(self) -> None:
        self._finish()


def _error_response(method: str) -> WsgiResponse:
    call = _Call(0)
    call.start_response("500 Internal Server Error", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(_ERROR_BODY))),
    ])
    resp = WsgiResponse(call, [_ERROR_BODY], method)
    resp._start()
    return resp


class WsgiTarget:
    """Serves a connector's requests by calling a WSGI application on the worker's thread.

    ``script_name`` is the prefix the application is mounted at (``"/my-service"``): requests
    under it get it as ``SCRIPT_NAME`` and the rest as ``PATH_INFO``. By default ``SCRIPT_NAME``
    is empty and ``PATH_INFO`` is the whole path, route included, as an HTTP target sees it.
    ``write_buffer`` bytes of legacy ``write()`` output are held in memory, the rest on disk.
    """

    def __init__(self, app: WsgiApp, *, script_name: str = "",
                 write_buffer: int = 1024 * 1024) -> None:
        if not callable(app):
            raise TypeError(f"WSGI application must be callable, got {app!r}")
        script_name = script_name.rstrip("/")
        if script_name and not script_name.startswith("/"):
            raise ValueError(f"script_name must start with '/', got {script_name!r}")
        self.app = app
        self.script_name = script_name
        self.write_buffer = write_buffer

    def __repr__(self) -> str:
        return f"WsgiTarget({self.app!r}, script_name={self.script_name!r})"

    def send(self, head: RequestHead, body: Iterable[bytes] | None,
             cancel: Cancel | None = None) -> WsgiResponse:
        """Run the application until its response head is known (see the module docstring).

        Errors before that become a 500; a failed tunnel re-raises the worker's own exception.
        """
        stream = RequestInput(body)
        environ = self.environ(head, stream)
        call = _Call(self.write_buffer)
        result: Iterable[bytes] | None = None
        try:
            result = self.app(environ, call.start_response)
            resp = WsgiResponse(call, result, head.method)
            resp._start()
        except Exception:
            _close_quietly(result)
            if stream.error is None:
                log.exception("WSGI application failed for %s %s", head.method,
                              head.target[:200])
                resp = _error_response(head.method)
            else:
                raise stream.error from None
        try:
            dropped = stream.drain()
        except ClientDisconnected:
            dropped = 0
        if stream.error is not None:
            resp.close()
            raise stream.error
        if dropped:
            log.debug("discarded %d unread request body bytes for %s %s", dropped,
                      head.method, head.target[:200])
        return resp

    def environ(self, head: RequestHead, stream: RequestInput) -> dict[str, Any]:
        """The PEP 3333 environ for ``head``, with ``stream`` as ``wsgi.input``."""
        raw_path, _, query = head.target.partition("?")
        if not raw_path.startswith("/"):  # absolute-form: keep only the path
            raw_path = urlsplit(raw_path).path or "/"
        path = _percent_decode(raw_path)
        script = self.script_name
        if script and (path == script or path.startswith(script + "/")):
            path = path[len(script):]
        else:
            script = ""
        env: dict[str, Any] = {
            "REQUEST_METHOD": head.method,
            "SCRIPT_NAME": _native(script),
            "PATH_INFO": path,
            "QUERY_STRING": _native(query),
            "REQUEST_URI": _native(head.target),
            "RAW_URI": _native(head.target),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "crank_sync",
            "wsgi.version": (1, 0),
            "wsgi.input": stream,
            "wsgi.input_terminated": True,  # reading to b"" is always safe, chunked or not
            "wsgi.errors": _ErrorStream(),
            "wsgi.multithread": True,  # v1 sockets and v3 streams call the app concurrently
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        forwarded: str | None = None
        x_for: str | None = None
        for name, value in head.headers:
            if "_" in name:
                continue  # X_Foo would pass for X-Foo once mapped to HTTP_X_FOO: drop it
            key = name.upper().replace("-", "_")
            value = _native(value)
            if key == "FORWARDED":
                forwarded = value
            elif key == "X_FORWARDED_FOR":
                x_for = value
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                env.setdefault(key, value)
                continue
            key = "HTTP_" + key
            if key in env:
                env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
            else:
                env[key] = value
        self._add_client(env, forwarded, x_for)
        return env

    @staticmethod
    def _add_client(env: dict[str, Any], forwarded: str | None, x_for: str | None) -> None:
        """REMOTE_ADDR and the scheme from the last hop, which the router itself added."""
        scheme = "http"
        addr: str | None = None
        port: str | None = None
        if forwarded:
            params = _forwarded_params(forwarded)
            if params.get("proto", "").lower() in ("http", "https"):
                scheme = params["proto"].lower()
            if "for" in params:
                addr, port = _node(params["for"])
        elif x_for:
            addr = x_for.split(",")[-1].strip()
            proto = env.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
            scheme = proto if proto in ("http", "https") else scheme
        if addr and addr != "unknown" and not addr.startswith("_"):
            env["REMOTE_ADDR"] = addr
            if port and port.isdigit():
                env["REMOTE_PORT"] = port
        env["wsgi.url_scheme"] = scheme
        host = env.get("HTTP_HOST")
        env["SERVER_NAME"], env["SERVER_PORT"] = _split_host(host or "localhost", scheme)

    def close(self) -> None:
        """Nothing to release: the application belongs to its owner."""


__all__ = ["ApplicationError", "ClientDisconnected", "FileWrapper", "RequestInput",
           "WsgiResponse", "WsgiTarget"]
