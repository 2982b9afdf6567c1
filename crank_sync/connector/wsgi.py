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
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from ..errors import TargetError
from ..protocol import RequestHead
from .target import Cancel
from .wsgi_call import AppCall, WsgiHeaders
from .wsgi_environ import _forwarded_params, _native, _node, _percent_decode, _split_host
from .wsgi_io import ClientDisconnected, FileWrapper, RequestInput, _ErrorStream

log = logging.getLogger(__name__)

WsgiApp = Callable[..., Iterable[bytes]]

_NO_BODY_STATUS = (204, 304)
_ERROR_BODY = b"Internal Server Error\n"


class _ApplicationError(TargetError):
    """The application failed after its response started: the worker aborts the stream,
    exactly as for an HTTP target that died mid-body (v1 close 1011, v3 RST_STREAM)."""

    def __init__(self, detail: str) -> None:
        super().__init__("connection closed", detail)


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

    def __init__(self, call: AppCall, result: Iterable[bytes], method: str) -> None:
        self._call = call
        self._result = result
        self._file = result.filelike if isinstance(result, FileWrapper) else None
        self._iter: Iterator[bytes] | None = None
        self._pending: list[bytes] = []
        #: How much of ``_pending[0]`` has been sent already.
        self._offset = 0
        self._done = False
        self._method = method
        self._sent = 0
        self.status = 0
        self.reason = ""
        self.headers = WsgiHeaders([])
        self._expected: int | None = None

    # -- used by WsgiTarget.send, on the worker thread --------------------------------------

    def start(self) -> None:
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
            raise _ApplicationError(f"application failed mid-body: {err!r}") from err
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
                raise _ApplicationError(
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
        data = self._pending[0]
        if len(data) - self._offset <= amt:
            del self._pending[0]
            if self._offset:
                data = data[self._offset:]
                self._offset = 0
            return data
        # a large chunk goes out ``amt`` bytes at a time, each one copy: slicing off the rest
        # instead would copy the whole remainder for every piece
        start = self._offset
        self._offset += amt
        return data[start:self._offset]

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
    call = AppCall(0)
    call.start_response("500 Internal Server Error", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(_ERROR_BODY))),
    ])
    resp = WsgiResponse(call, [_ERROR_BODY], method)
    resp.start()
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
        call = AppCall(self.write_buffer)
        result: Iterable[bytes] | None = None
        try:
            result = self.app(environ, call.start_response)
            resp = WsgiResponse(call, result, head.method)
            resp.start()
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


__all__ = ["ClientDisconnected", "FileWrapper", "RequestInput", "WsgiResponse", "WsgiTarget"]
