"""Replaying a request against the target, adding nothing the client did not send.

The pool owns urllib3 connections (``urllib3.connection.HTTPConnection``) and uses only their
public ``connect``/``request``/``getresponse``: urllib3's pool re-encodes the request target,
so the pool here is our own, and the request line goes out byte for byte. ``User-Agent`` and
``Accept-Encoding`` are not added (urllib3's public ``SKIP_HEADER``); a bodyless POST, PUT or
PATCH gets ``Content-Length: 0``, as RFC 9110 asks a sender and as the Java connector sends it.
No retries, no redirects, no decompression; bodies stream both ways; a keep-alive connection
goes back to a bounded pool once its response is read to the end. Foreign errors (OSError,
urllib3's and ``http.client``'s) become :class:`TargetError` here.
"""
from __future__ import annotations

import http.client
import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from urllib3.util import SKIP_HEADER

from ..errors import TargetError
from ..protocol import RequestHead

log = logging.getLogger(__name__)
_Connection = urllib3.connection.HTTPConnection
#: What a target connection raises, translated to TargetError where it enters.
_FOREIGN = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)


def failure_reason(err: BaseException) -> str:
    """What went wrong with the target, in a few words, for the close reason or RST_STREAM
    message the router shows its client (``connection refused``, ``timed out``): a
    TargetError's reason, else the innermost known cause along the exception's chain."""
    if isinstance(err, TargetError):
        return err.reason
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
    (TimeoutError, "timed out"),
    (socket.gaierror, "name resolution failed"),
    (ssl.SSLError, "TLS error"),
    ((http.client.HTTPException, ConnectionError, TargetError,
      urllib3.exceptions.HTTPError), "connection closed"),
)


def _readable(sock: socket.socket) -> bool:
    """Has ``sock`` something to read (or hung up)? poll, not select: any descriptor number."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _translated(err: BaseException) -> TargetError:
    return TargetError(failure_reason(err), repr(err))


_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def _reset_on_close(conn: _Connection) -> None:
    """Make closing ``conn`` reset it: the target's blocked writes fail at once. A plain close
    after a shutdown leaves the target waiting on a zero window until the kernel's FIN timeout
    (60 s on Linux) when the connector had stopped reading a fast response."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        except OSError:
            pass


class _Cancelled(Exception):
    """The router is done with a request (the client went away, the stream was reset, the
    socket was closed or lost): the worker stops working on it. Raised by a worker's request
    body iterator, it passes through ``Target.send``; never seen outside the connector."""


class Cancel:
    """Lets another thread abort a request that is blocked on the target.

    The pool attaches the request's connection here; ``cancel()`` shuts its socket down,
    which makes the blocked read or write fail at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self.cancelled = False

    def attach(self, conn: _Connection) -> None:
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
    def _shutdown(conn: _Connection) -> None:
        _reset_on_close(conn)
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TargetResponse(Protocol):
    """What a target returns: a :class:`PooledResponse`, or anything shaped like one."""

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


class PooledResponse:
    """The target's response, its body unread: ``read1`` streams it (still encoded, chunked
    framing removed); ``release_conn`` hands the connection back to the pool when the body
    was read to the end and the target keeps it alive, else closes it."""

    def __init__(self, client: TargetClient, conn: _Connection,
                 resp: urllib3.BaseHTTPResponse) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self._resp = resp
        self.status = resp.status
        self.reason: str | None = resp.reason
        self.headers = resp.headers
        self._done = resp.closed

    @property
    def length_remaining(self) -> int | None:
        """Body bytes still to come of a fixed-length body (None: chunked or until close)."""
        if self._done:
            return 0
        return self._resp.length_remaining

    def _complete(self) -> bool:
        """The body was read to its end (a reader may stop at ``length_remaining == 0``
        without the final empty read)."""
        return self._done or self.length_remaining == 0

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        if self._done:
            return b""
        expected = self.length_remaining
        try:
            data = self._resp.read1(amt, decode_content=False)
        except _FOREIGN as err:
            self.close()
            raise _translated(err) from err
        if not data:
            if expected:  # http.client takes an early close of a sized body as its end
                self.close()
                raise TargetError("connection closed", f"{expected} body bytes missing")
            self._done = True
        return data

    def read(self) -> bytes:
        """The rest of the body (for tests and small bodies)."""
        parts = []
        while data := self.read1(65536):
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        """Abandon the response: its connection is closed, never reused."""
        conn, self._conn = self._conn, None
        self._done = True
        if conn is not None:
            _reset_on_close(conn)
        self._resp.close()
        if conn is not None:
            conn.close()

    def release_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        complete = self._complete()
        if complete and conn.sock is not None:  # http.client drops it when the target closes
            self._client.checkin(conn)
        else:
            conn.close()


class TargetClient:
    """A bounded pool of keep-alive connections to one target service."""

    def __init__(self, target: str, *, connect_timeout: float, read_timeout: float,
                 maxsize: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(target)
        self.base_path = parts.path.rstrip("/")
        if not parts.hostname:
            raise ValueError(f"target {target!r} has no host")
        self._host, self._port = parts.hostname, parts.port
        self._tls = parts.scheme == "https"
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._closed = False
        #: Connections opened so far (the pool's reuse shows in it).
        self.connections_made = 0

    def open_socket(self) -> socket.socket:
        """A connection of its own to the target (TLS for https), for a websocket tunnel;
        TargetError when it cannot be made."""
        port = self._port or (443 if self._tls else 80)
        try:
            sock = socket.create_connection((self._host, port), timeout=self._connect_timeout)
        except OSError as err:
            raise _translated(err) from err
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:
                context = self._ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=self._host)
            sock.settimeout(self._read_timeout)
        except OSError as err:
            sock.close()
            raise _translated(err) from err
        return sock

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def _new_connection(self) -> _Connection:
        conn: _Connection
        if self._tls:
            conn = urllib3.connection.HTTPSConnection(self._host, self._port,
                                                      timeout=self._connect_timeout,
                                                      ssl_context=self._ssl_context)
        else:
            conn = urllib3.connection.HTTPConnection(self._host, self._port,
                                                     timeout=self._connect_timeout)
        with self._lock:
            self.connections_made += 1
        return conn

    def _checkout(self) -> _Connection:
        """An idle connection the target has not closed meanwhile, else a new one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new_connection()
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()  # readable while idle: closed by the target (or junk)

    def checkin(self, conn: _Connection) -> None:
        """A connection whose response was read to the end: kept, or closed if the pool is
        full (a v1 connector's concurrency is not bounded by the pool size) or closed."""
        with self._lock:
            if not self._closed and len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        log.debug("target pool full: closing a surplus connection")
        conn.close()

    def send(self, head: RequestHead, body: Iterable[bytes] | None,
             cancel: Cancel | None = None) -> PooledResponse:
        """Send ``head`` (and ``body`` when it has one); the response body is left unread.

        ``cancel.cancel()`` from another thread aborts the exchange with the target. Errors of
        the target raise TargetError; whatever the body iterator raises passes through.
        """
        conn = self._checkout()
        if cancel is not None:
            cancel.attach(conn)
        ok = False
        try:
            try:
                if conn.sock is None:
                    conn.connect()
                    if conn.sock is not None:
                        conn.sock.settimeout(self._read_timeout)
                    if cancel is not None:
                        cancel.attach(conn)  # a cancel during the connect
                self._request(conn, head, body)
            except _FOREIGN as err:
                raise _translated(err) from err
            try:
                resp = conn.getresponse()
            except _FOREIGN as err:
                raise _translated(err) from err
            ok = True
        finally:
            if not ok:
                conn.close()
        return PooledResponse(self, conn, resp)

    def _request(self, conn: _Connection, head: RequestHead,
                 body: Iterable[bytes] | None) -> None:
        """The head and the body, through urllib3's public ``request``: the target exactly
        as the client sent it, and nothing added that the client did not send."""
        headers = urllib3.HTTPHeaderDict()
        for name, value in head.headers:
            headers.add(name, value)
        for name in ("User-Agent", "Accept-Encoding"):
            if name not in headers:
                headers[name] = SKIP_HEADER
        chunked = body is not None and "content-length" not in headers
        if chunked:  # urllib3 writes the framing itself
            for name in [n for n in headers if n.lower() == "transfer-encoding"]:
                del headers[name]
        conn.request(head.method, self.base_path + head.target,
                     body=(c for c in body if c) if body is not None else None,
                     headers=headers, chunked=chunked, preload_content=False,
                     decode_content=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def send_request(target: Target, head: RequestHead, body: Iterable[bytes] | None,
                 cancel: Cancel) -> TargetResponse:
    """``target.send``: TargetClient and WsgiTarget raise TargetError; an OSError of a Target
    of the application's own becomes one here, so the workers catch TargetError only."""
    try:
        return target.send(head, body, cancel)
    except OSError as err:
        raise _translated(err) from err


def iter_response(resp: TargetResponse, chunk_size: int) -> Iterator[bytes]:
    """The raw (still encoded) response body, as it arrives (an OSError of a response of the
    application's own as a TargetError, as in :func:`send_request`)."""
    while True:
        try:
            data = resp.read1(chunk_size, decode_content=False)
        except OSError as err:
            raise _translated(err) from err
        if not data:
            return
        yield data
