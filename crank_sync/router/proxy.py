"""The client-facing handler: one worker thread per connection, one request at a time.

The worker borrows a connector socket from the registry, sends the request down it, and
streams the response back. Errors map to statuses in one place (:func:`status_for`); once the
response has started, a failure can only abort the client connection.
"""
from __future__ import annotations

import email.errors
import http
import itertools
import logging
import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    ConnectorProtocolError,
    CrankError,
    GatewayTimeout,
    HeadersTooLarge,
    MethodNotAllowed,
    RemoteProtocolError,
    UriTooLong,
)
from ..protocol import (
    MARKER_BODY_ENDED,
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    ResponseHead,
    encode_request,
    filter_request_headers,
    filter_response_headers,
    parse_response_head,
    request_text,
    route_of,
)
from . import v3
from .http_io import ClientWriter, iter_body, request_framing
from .pool import ConnectorSocket
from .websocket import ConnectionClosed, RouterWebSocket

if TYPE_CHECKING:
    from .server import RouterCore
    from .v3 import RouterStream

log = logging.getLogger(__name__)
access_log = logging.getLogger("crank_sync.access")

#: The email parser complains about a multipart body it was not given: not a header defect.
_BODY_DEFECTS = (email.errors.StartBoundaryNotFoundDefect,
                 email.errors.MultipartInvariantViolationDefect,
                 email.errors.NoBoundaryInMultipartDefect)
#: Close codes a connector uses for "response complete" (1005: a close frame without a code).
_NORMAL_CLOSE = (1000, 1005)
#: While waiting on a connector, the client connection is checked this often (seconds).
CLIENT_CHECK_INTERVAL = 0.25
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
#: How many dead sockets a request may skip before giving up with 502.
_MAX_SEND_ATTEMPTS = 5


def status_for(err: CrankError) -> int:
    return err.status


def readable_now(sock: Any) -> bool:
    """Is there something to read (or EOF) on ``sock``? poll(), not select(): a busy router
    has far more than 1,024 descriptors, which select() cannot watch."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class _HeadReader:
    """Wraps rfile while the head is read, to tell a blank line from end-of-file: the
    standard parser takes both as the end of the headers."""

    def __init__(self, rfile: Any) -> None:
        self._rfile = rfile
        self.last = b""

    def readline(self, size: int = -1) -> bytes:
        self.last = self._rfile.readline(size)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class _Aborted(Exception):
    """The response had started when the exchange failed: the client connection is dropped."""


class ClientHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "crank_sync"
    core: RouterCore
    _response_started = False
    _body_pending = False
    _status = 0
    _head_ok = False

    def setup(self) -> None:
        self.core = self.server.core  # type: ignore[attr-defined]
        self.timeout = self.core.config.client_timeout  # type: ignore[misc]
        super().setup()

    # -- request head ------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        cfg = self.core.config
        limit = cfg.max_header_bytes
        try:
            # wait (up to client_timeout) for the first byte, then the whole head must arrive
            # within header_timeout however slowly it trickles
            if not self.rfile.peek(1):  # type: ignore[attr-defined]
                self.close_connection = True
                return
            key = self.core.deadlines.add(self.connection, cfg.header_timeout,
                                          f"request head from {self.client_address[0]}")
            rfile = self.rfile
            self.rfile = reader = _HeadReader(rfile)  # type: ignore[assignment]
            try:
                self.raw_requestline = reader.readline(limit + 1)
                if self.raw_requestline and len(self.raw_requestline) <= limit:
                    self._head_ok = self.parse_request()
            finally:
                self.rfile = rfile
                self.core.deadlines.cancel(key)
            if self._head_ok and reader.last not in (b"\r\n", b"\n"):
                # the head ended at end-of-file (client gone or deadline), not at a blank line
                log.info("incomplete request head from %s: dropped", self.client_address[0])
                self.close_connection = True
                return
        except (TimeoutError, OSError, ValueError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        self.core.busy_connections.add(self.connection)  # from here on, a stop waits for us
        try:
            self._handle_request(limit)
        finally:
            self.core.busy_connections.discard(self.connection)

    def _handle_request(self, limit: int) -> None:
        if len(self.raw_requestline) > limit:
            self.requestline = self.request_version = self.command = ""
            self._reject(UriTooLong("request line too long"))
            return
        if not self._head_ok:  # the standard library has answered 400/431/505
            self.close_connection = True
            return
        self._handle()
        if self.close_connection:
            return
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _head_size(self) -> int:
        return len(self.raw_requestline) + sum(
            len(k) + len(v) + 4 for k, v in self.headers.items()
        )

    def _raw_target(self) -> str:
        parts = self.requestline.split(" ")
        target = parts[1] if len(parts) == 3 else ""
        if not target.isascii() or not target.isprintable():
            raise BadRequest("request target must be printable ASCII")
        if not target.startswith("/"):
            raise BadRequest(f"request target must be origin-form, got {target[:80]!r}")
        return target

    # -- the exchange ------------------------------------------------------------------------

    def _handle(self) -> None:
        started = time.monotonic()
        self._status = 0
        self._response_started = False
        self._body_pending = False
        self._bytes_in = 0
        self._route = "(none)"
        self._connector = "-"
        self._protocol = "-"
        self.request_id = self._request_id()
        self._writer = ClientWriter(self.wfile)
        error: str | None = None
        try:
            self._proxy()
        except ClientGone as err:
            error = "ClientGone"
            log.debug("client %s went away [%s]: %s", self.client_address[0], self.request_id,
                      err)
            self.close_connection = True
        except _Aborted as err:
            error = "Aborted"
            try:
                self._writer.flush()  # what arrived goes out; the close then marks it short
            except ClientGone:
                pass
            log.warning("aborted response to %s %s [%s]: %s", self.command, self.path[:200],
                        self.request_id, err)
            self.close_connection = True
        except CrankError as err:
            error = type(err).__name__
            self._reject(err)
        finally:
            if self.core.draining:
                self.close_connection = True
            self._log_access(started, error)

    def _request_id(self) -> str:
        """The client's X-Request-Id when it is sane, otherwise a new one."""
        rid = self.headers.get("X-Request-Id", "")
        if 0 < len(rid) <= 128 and _REQUEST_ID_RE.match(rid):
            return rid
        return uuid.uuid4().hex

    def _log_access(self, started: float, error: str | None) -> None:
        seconds = time.monotonic() - started
        out = self._writer.bytes_written
        self.core.metrics.observe(self._route, self._status, seconds, self._bytes_in, out, error)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                '%s %s "%s %s" route=%s status=%s in=%d out=%d %.1fms connector=%s protocol=%s'
                " request_id=%s",
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds)),
                self.client_address[0], self.command, self.path[:500], self._route,
                self._status or "-", self._bytes_in, out, seconds * 1000, self._connector,
                self._protocol, self.request_id,
            )

    def body_chunks(self, length: int | None) -> Iterator[bytes]:
        """The client's request body, counted. A chunked body's first chunk is read before
        this returns, so a malformed first chunk size is refused before anything is sent on."""
        chunks = self._counted(iter_body(self.rfile, length))
        if length is not None:
            return chunks
        first = next(chunks, None)
        return itertools.chain([first] if first else [], chunks)

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for data in chunks:
            self._bytes_in += len(data)
            yield data

    def _proxy(self) -> None:
        cfg = self.core.config
        if self._head_size() > cfg.max_header_bytes:
            raise HeadersTooLarge(f"request head over {cfg.max_header_bytes} bytes")
        defects = [d for d in self.headers.defects if not isinstance(d, _BODY_DEFECTS)]
        if defects:
            raise BadRequest(f"malformed request headers: {defects[0]!r}")
        if self.request_version == "HTTP/0.9":
            raise BadRequest("HTTP/0.9 is not supported")
        if self.command in ("TRACE", "CONNECT"):
            raise MethodNotAllowed(f"{self.command} is not allowed")
        target = self._raw_target()
        length = request_framing(self.headers)
        if length != 0:
            self._body_pending = True
        headers = filter_request_headers(
            self.headers.items(),
            client_ip=self.client_address[0],
            proto="https" if self.core.config.tls_cert else "http",
            by=self.core.by_name,
            via_name=cfg.via_name,
            discard_client_forwarded=cfg.discard_client_forwarded,
            x_forwarded=cfg.x_forwarded_headers,
        )
        if self.headers.get("X-Request-Id") != self.request_id:
            headers = [(n, v) for n, v in headers if n.lower() != "x-request-id"]
            headers.append(("X-Request-Id", self.request_id))
        has_body = length != 0
        self._keep_alive = not self.close_connection
        if has_body:
            # an unread body would be parsed as the next request: only a full read may keep alive
            self.close_connection = True
        try:
            head = RequestHead(
                method=self.command,
                target=target,
                headers=tuple(headers),
                marker=MARKER_BODY_FOLLOWS if has_body else MARKER_NO_BODY,
            )
        except CrankError as err:
            raise BadRequest(str(err)) from err
        self.request_body = self.body_chunks(length) if has_body else iter(())
        sock, stream = self._borrow(route_of(target), head)
        if stream is not None:
            v3.exchange(self, sock, stream, length)
            return
        finished = False
        try:
            if has_body:
                self._send_body(sock, length)
            finished = self._relay_response(sock)
        finally:
            if not finished:
                sock.ws.close(1001, "request ended early")
            self.core.registry.remove(sock)

    def _borrow(self, route: str, head: RequestHead) -> tuple[ConnectorSocket, RouterStream | None]:
        """Borrow a socket and send the request head, skipping sockets that died while idle.

        Returns the socket, and the stream when it is a v3 socket.
        """
        registry = self.core.registry
        deadline = time.monotonic() + self.core.config.connector_max_wait
        host = self.headers.get("Host")
        for _ in range(_MAX_SEND_ATTEMPTS):
            sock = registry.acquire(route, max(0.0, deadline - time.monotonic()), host)
            self._route = sock.route
            self._connector = sock.connector_instance_id
            self._protocol = sock.protocol
            try:
                if sock.session is None:
                    sock.ws.send(encode_request(head))
                    return sock, None
                stream = sock.session.open_stream()
                try:
                    v3.send_head(stream, request_text(head), end_stream=not head.has_body)
                except BaseException:
                    sock.session.end_stream(stream)
                    raise
                return sock, stream
            except (ConnectionClosed, OSError) as err:
                log.info("connector socket of %s failed before use: %r", sock.route, err)
                if sock.session is None:
                    sock.ws.close(1001)
                    registry.remove(sock)
        raise BadGateway("connector sockets kept failing")

    def _send_body(self, sock: ConnectorSocket, length: int | None) -> None:
        try:
            for data in self.request_body:
                sock.ws.send(data)
            sock.ws.send(MARKER_BODY_ENDED)
        except (ConnectionClosed, OSError) as err:
            # the connector gave up mid-upload; its close code tells the client why
            log.info("connector socket closed during request body: %r", err)
            return
        self.close_connection = not self._keep_alive

    def _relay_response(self, sock: ConnectorSocket) -> bool:
        """Stream the connector's answer to the client. True when it completed normally."""
        cfg = self.core.config
        ws = sock.ws
        response: _ResponseState | None = None
        last_data = time.monotonic()
        while True:
            if response is not None and not ws.has_pending():
                response.writer.flush()  # nothing more at hand: what we have goes out now
            try:
                msg = ws.receive(timeout=CLIENT_CHECK_INTERVAL)
            except ConnectionClosed:
                break
            if msg is None:
                if self.client_gone():
                    raise ClientGone("client disconnected while waiting for the connector")
                if time.monotonic() - last_data < cfg.idle_timeout:
                    continue
                ws.close(1001, "idle timeout")
                if response is None:
                    raise GatewayTimeout(f"no response from connector in {cfg.idle_timeout:.0f}s")
                raise _Aborted(f"no data from connector in {cfg.idle_timeout:.0f}s")
            if isinstance(msg, str):
                if response is None:
                    response = self.start_response(msg, ws)
                last_data = time.monotonic()
                continue  # v1 sends nothing textual after the head; tolerate and ignore
            if response is None:
                ws.close(1002, "body before response head")
                raise ConnectorProtocolError("connector sent body bytes before a response head")
            response.write(msg)
            last_data = time.monotonic()
        code = ws.close_reason if ws.close_received else None
        if response is None:
            if code == 1008:
                raise BadRequest("connector closed with 1008 (policy violation)")
            raise BadGateway(f"connector closed with {code or 'no close frame'} before responding")
        if code not in _NORMAL_CLOSE:
            raise _Aborted(f"connector closed with {code or 'no close frame'} mid-response")
        response.finish()
        return True

    def client_gone(self) -> bool:
        """Has the client closed its connection? (Checked while waiting on a connector.)"""
        try:
            if not readable_now(self.connection):
                return False
            # socket.socket.recv reads the raw stream even under TLS, where only EOF matters
            return socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def aborted(self, reason: str) -> Exception:
        """The exception that drops the client connection mid-response."""
        return _Aborted(reason)

    def start_response(self, text: str, ws: RouterWebSocket | None = None) -> _ResponseState:
        """Parse the connector's response head and write it to the client."""
        if len(text) > self.core.config.max_header_bytes:
            if ws is not None:
                ws.close(1009, "response head too large")
            raise ConnectorProtocolError(f"response head of {len(text)} characters is too large")
        try:
            head = parse_response_head(text)
        except RemoteProtocolError as err:
            if ws is not None:
                ws.close(1002, "bad response head")
            raise ConnectorProtocolError(f"bad response head from connector: {err}") from err
        if head.status < 200:
            if ws is not None:
                ws.close(1002, "informational status")
            raise ConnectorProtocolError(f"connector answered with status {head.status}")
        state = _ResponseState(self, head)
        self._status = head.status
        return state

    # -- errors ------------------------------------------------------------------------------

    def _reject(self, err: CrankError) -> None:
        status = status_for(err)
        self._status = status
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(level, "%d for %s %r from %s [%s]: %s", status, self.command,
                (self.path if hasattr(self, "path") else "")[:200], self.client_address[0],
                getattr(self, "request_id", "-"), err)
        if self._response_started:
            self.close_connection = True
            return
        if status in (400, 414, 431) or self._body_pending:
            self.close_connection = True
        self._write_error(status, str(err))

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Errors found by the standard library's parser (400, 431, 505): always a full
        HTTP/1.1 status line (the library omits it for what it takes as HTTP/0.9)."""
        log.info("%d for %r from %s: %s", code, self.requestline[:200], self.client_address[0],
                 message)
        self._status = code
        self.close_connection = True
        self._write_error(code, message or _phrase(code))

    def _write_error(self, status: int, text: str) -> None:
        phrase = _phrase(status)
        body = f"{status} {phrase}: {text}\n".encode("utf-8", "replace")
        head = [
            f"HTTP/1.1 {status} {phrase}",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
        ]
        if hasattr(self, "request_id"):
            head.append(f"X-Request-Id: {self.request_id}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if getattr(self, "command", None) != "HEAD":
            data += body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s - " + format, self.client_address[0], *args)


class _ResponseState:
    """Framing of one response to the client: Content-Length kept, otherwise chunked."""

    def __init__(self, handler: ClientHandler, head: ResponseHead) -> None:
        self.handler = handler
        self.writer = handler._writer
        headers = filter_response_headers(head.headers)
        lengths = {v.strip() for n, v in headers if n.lower() == "content-length"}
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            raise ConnectorProtocolError(f"invalid Content-Length from connector: {lengths}")
        self.expected = int(lengths.pop()) if lengths else None
        self.body_allowed = not (
            handler.command == "HEAD" or head.status in (204, 304) or head.status < 200
        )
        if head.status == 204:
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        if self.body_allowed and self.expected is None:
            if handler.request_version == "HTTP/1.1":
                headers.append(("Transfer-Encoding", "chunked"))
                self.writer.chunked = True
            else:
                handler.close_connection = True
        if not any(n.lower() == "x-request-id" for n, _ in headers):
            headers.append(("X-Request-Id", handler.request_id))
        if handler.close_connection or handler.core.draining:
            headers.append(("Connection", "close"))
        reason = head.reason if head.reason and head.reason.isascii() else _phrase(head.status)
        lines = [f"HTTP/1.1 {head.status} {reason}"]
        lines.extend(f"{n}: {v}" for n, v in headers)
        try:
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError as err:
            raise ConnectorProtocolError("response header is not latin-1") from err
        handler._response_started = True
        self.writer.write(data)
        self.sent = 0

    def write(self, data: bytes) -> None:
        if not self.body_allowed:
            return
        if self.expected is not None and self.sent + len(data) > self.expected:
            raise _Aborted("connector sent more bytes than its Content-Length")
        self.sent += len(data)
        self.writer.write_body(data)

    def finish(self) -> None:
        if self.body_allowed and self.expected is not None and self.sent != self.expected:
            raise _Aborted(f"connector sent {self.sent} of {self.expected} bytes")
        if self.body_allowed:
            self.writer.finish()
        else:
            self.writer.flush()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
