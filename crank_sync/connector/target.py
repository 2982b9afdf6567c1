"""Replaying a request against the target with urllib3, adding nothing the client did not send.

urllib3 normally adds ``User-Agent``, ``Accept-Encoding: identity`` and ``Content-Length: 0``;
a proxy must not, so the connection classes here drop what the caller did not ask for.
No retries, no redirects, no decompression; bodies stream both ways.
"""
from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import SKIP_HEADER

from ..protocol import RequestHead

_AUTO_HEADERS = frozenset({"content-length", "user-agent"})
log = logging.getLogger(__name__)
_current = threading.local()


def failure_reason(err: BaseException) -> str:
    """What went wrong with the target, in a few words, for the close reason or RST_STREAM
    message the router shows its client (``connection refused``, ``timed out``). urllib3
    wraps the socket's error (its NewConnectionError is even a timeout), so the innermost
    known cause along the exception's chain wins."""
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in chain and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for cause in reversed(chain):
        for kinds, words in _FAILURE_WORDS:
            if isinstance(cause, kinds):
                return words
    return type(err).__name__


_FAILURE_WORDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    ((TimeoutError, urllib3.exceptions.TimeoutError), "timed out"),
    (socket.gaierror, "name resolution failed"),
    (ssl.SSLError, "TLS error"),
    (urllib3.exceptions.ProtocolError, "connection closed"),
)


class Cancel:
    """Lets another thread abort a request that is blocked on the target.

    The connection urllib3 uses for the request attaches itself here; ``cancel()`` shuts its
    socket down, which makes the blocked read or write fail at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: HTTPConnection | None = None
        self.cancelled = False

    def attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._conn = conn
            cancelled = self.cancelled
        if cancelled:
            self._shutdown(conn)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            conn = self._conn
        if conn is not None:
            self._shutdown(conn)

    @staticmethod
    def _shutdown(conn: HTTPConnection) -> None:
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Replay:
    """Mixin for urllib3 connections: send exactly the caller's headers."""

    _crank_given: frozenset[str] = frozenset()

    def request(self, method: str, url: str, body: Any = None,
                headers: Any = None, **kwargs: Any) -> None:
        cancel = getattr(_current, "cancel", None)
        if cancel is not None:
            cancel.attach(self)
        # urllib3's pool percent-encodes the target (and upper-cases %2f): the request line
        # must be the one the client sent, byte for byte
        url = getattr(_current, "target", None) or url
        headers = headers or {}
        self._crank_given = frozenset(k.lower() for k in headers)
        if "accept-encoding" not in self._crank_given:
            headers = urllib3.HTTPHeaderDict(headers)
            headers["Accept-Encoding"] = SKIP_HEADER
        super().request(method, url, body, headers, **kwargs)  # type: ignore[misc]

    def putheader(self, header: str | bytes, *values: Any) -> None:
        name = header.lower() if isinstance(header, str) else header.decode().lower()
        if name in _AUTO_HEADERS and name not in self._crank_given:
            return
        super().putheader(header, *values)  # type: ignore[misc]


class ReplayHTTPConnection(_Replay, HTTPConnection):
    pass


class ReplayHTTPSConnection(_Replay, HTTPSConnection):
    pass


class _QuietWhenFull:
    """Mixin for urllib3 pools: a connection returned to a full pool is closed without
    urllib3's WARNING. A v1 connector's concurrency is not bounded by the pool size (each
    request opens its own replacement socket), so a burst logged one warning per request."""

    pool: Any

    def _put_conn(self, conn: Any) -> None:
        pool = self.pool
        if pool is not None and conn is not None:
            try:
                pool.put(conn, block=False)
                return
            except queue.Full:
                log.debug("target pool full: closing a surplus connection")
                conn.close()
                return
        super()._put_conn(conn)  # type: ignore[misc]  # a closed pool: urllib3 closes it


class _ReplayHTTPPool(_QuietWhenFull, HTTPConnectionPool):
    ConnectionCls = ReplayHTTPConnection


class _ReplayHTTPSPool(_QuietWhenFull, HTTPSConnectionPool):
    ConnectionCls = ReplayHTTPSConnection


class TargetResponse(Protocol):
    """What a target returns: an urllib3 response, or anything shaped like one."""

    status: int
    reason: str | None

    @property
    def headers(self) -> Any: ...  # has .items() yielding duplicates separately

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes: ...
    def close(self) -> None: ...
    def release_conn(self) -> None: ...


class Target(Protocol):
    """Something a connector replays requests against (an HTTP service, a WSGI app)."""

    def send(self, head: RequestHead, body: Iterable[bytes] | None,
             cancel: Cancel | None = None) -> TargetResponse: ...

    def close(self) -> None: ...


class TargetClient:
    """A pool of keep-alive connections to one target service."""

    def __init__(self, target: str, *, connect_timeout: float, read_timeout: float,
                 maxsize: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(target)
        self.base_path = parts.path.rstrip("/")
        if not parts.hostname:
            raise ValueError(f"target {target!r} has no host")
        timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.pool: HTTPConnectionPool
        if parts.scheme == "https":
            self.pool = _ReplayHTTPSPool(parts.hostname, parts.port, maxsize=maxsize,
                                         block=False, retries=False, timeout=timeout,
                                         ssl_context=ssl_context)
        else:
            self.pool = _ReplayHTTPPool(parts.hostname, parts.port, maxsize=maxsize,
                                        block=False, retries=False, timeout=timeout)

    def send(self, head: RequestHead, body: Iterable[bytes] | None,
             cancel: Cancel | None = None) -> urllib3.BaseHTTPResponse:
        """Send ``head`` (and ``body`` when it has one); the response body is left unread.

        ``cancel.cancel()`` from another thread aborts the exchange with the target.
        """
        headers = urllib3.HTTPHeaderDict()
        for name, value in head.headers:
            headers.add(name, value)
        has_length = "content-length" in headers
        _current.cancel = cancel
        _current.target = self.base_path + head.target
        try:
            return self._urlopen(head, body, headers, has_length)
        finally:
            _current.cancel = _current.target = None

    def _urlopen(self, head: RequestHead, body: Iterable[bytes] | None,
                 headers: urllib3.HTTPHeaderDict, has_length: bool) -> urllib3.BaseHTTPResponse:
        return self.pool.urlopen(
            head.method,
            self.base_path + head.target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            release_conn=False,
            chunked=body is not None and not has_length,
        )

    def close(self) -> None:
        self.pool.close()


def iter_response(resp: TargetResponse, chunk_size: int) -> Iterator[bytes]:
    """The raw (still encoded) response body, as it arrives."""
    while True:
        data = resp.read1(chunk_size, decode_content=False)
        if not data:
            return
        yield data
