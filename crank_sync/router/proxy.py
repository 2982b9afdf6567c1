"""The client-facing handler: one worker thread per connection, one request at a time.

The worker borrows a connector socket from the registry, sends the request down it, and
streams the response back. Errors map to statuses in one place (:func:`status_for`); once the
response has started, a failure can only abort the client connection.
"""
from __future__ import annotations

import itertools
import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from ..errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    ConnectorProtocolError,
    CrankError,
    HeadersTooLarge,
    MethodNotAllowed,
    NoConnectorAvailable,
    NoRoute,
    RemoteProtocolError,
    SocketClosedBeforeResponse,
    UriTooLong,
)
from ..protocol import (
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    encode_request,
    filter_request_headers,
    parse_response_head,
    request_text,
)
from ..protocol.headers import connection_tokens
from ..protocol.http_head import ClientHead, parse_client_head
from . import v1, v3
from .http_io import ClientWriter, iter_body, read_request_head, request_framing
from .pool import ConnectorSocket
from .response import Aborted, ResponseState, phrase, readable_now
from .websocket import ConnectionClosed, RouterWebSocket

if TYPE_CHECKING:
    from .core import RouterCore
    from .v3 import RouterStream

log = logging.getLogger(__name__)
access_log = logging.getLogger("crank_sync.access")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
#: Request ids name a request in logs and headers; they are not secrets, so no system call
#: for each one (uuid4 reads os.urandom).
_request_ids = random.Random()
#: How many dead sockets a request may skip before giving up with 502.
_MAX_SEND_ATTEMPTS = 5
#: Requests retried on another v1 socket when theirs closed unanswered (nginx's rule).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def status_for(err: CrankError) -> int:
    return err.status


class ClientHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "crank_sync"
    core: RouterCore
    _response_started = False
    _body_pending = False
    _status = 0

    def setup(self) -> None:
        self.core = self.server.core  # type: ignore[attr-defined]
        self.timeout = self.core.config.client_timeout  # type: ignore[misc]
        super().setup()

    # -- request head ------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        cfg = self.core.config
        error: CrankError | None = None
        raw: bytes | None = b""
        try:
            # wait (up to client_timeout) for the first byte, then the whole head must arrive
            # within header_timeout however slowly it trickles
            if not self.rfile.peek(1):  # type: ignore[attr-defined]
                self.close_connection = True
                return
            key = self.core.deadlines.add(self.connection, cfg.header_timeout,
                                          f"request head from {self.client_address[0]}")
            try:
                raw = read_request_head(self.rfile, cfg.max_header_bytes)
            except (UriTooLong, HeadersTooLarge) as err:
                error = err
            finally:
                self.core.deadlines.cancel(key)
        except (TimeoutError, OSError, ValueError):
            self.close_connection = True
            return
        if raw is None:
            # the head ended at end-of-file (client gone or deadline), not at a blank line
            log.info("incomplete request head from %s: dropped", self.client_address[0])
            self.close_connection = True
            return
        self.core.busy_connections.add(self.connection)  # from here on, a stop waits for us
        try:
            self._handle_request(raw, error)
        finally:
            self.core.busy_connections.discard(self.connection)

    def _handle_request(self, raw: bytes, error: CrankError | None) -> None:
        self.requestline = self.request_version = self.command = self.path = ""
        try:
            if error is not None:
                raise error
            self._take_head(parse_client_head(raw))
        except CrankError as err:  # nothing of it is sent on: the connection is not reused
            line = raw.split(b"\n", 1)[0].rstrip(b"\r\n")[:200]
            log.info("%d for request line %r from %s: %s", err.status, line,
                     self.client_address[0], err)
            self._status = err.status
            self.core.metrics.observe("(none)", err.status, 0.0, 0, 0, type(err).__name__)
            self.close_connection = True
            self._write_error(err.status, str(err))
            return
        if self._expects_continue() and not self.handle_expect_100():
            return
        self._handle()
        if self.close_connection:
            return
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _take_head(self, head: ClientHead) -> None:
        """Set what BaseHTTPRequestHandler.parse_request would, from a head checked strictly."""
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.requestline = head.request_line
        self.headers = message = HTTPMessage()
        for name, value in head.headers:
            message[name] = value  # appends: duplicates are kept, in order
        tokens = connection_tokens(head.headers)
        if "close" in tokens:
            self.close_connection = True
        else:
            self.close_connection = head.version == "HTTP/1.0" and "keep-alive" not in tokens

    def _expects_continue(self) -> bool:
        return (self.request_version == "HTTP/1.1"
                and self.headers.get("Expect", "").lower() == "100-continue")

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
        self._retries = 0
        self.request_id = self._request_id()
        self._writer = ClientWriter(self.wfile)
        error: str | None = None
        aborted: str | None = None
        try:
            self._proxy()
        except ClientGone as err:
            error, aborted = "ClientGone", "client_gone"
            log.debug("client %s went away [%s]: %s", self.client_address[0], self.request_id,
                      err)
            self.close_connection = True
        except Aborted as err:
            error, aborted = "Aborted", err.kind
            try:
                self._writer.flush()  # what arrived goes out; the close then marks it short
            except ClientGone:
                pass
            log.warning("aborted response to %s %s [%s]: %s", self.command, self.path[:200],
                        self.request_id, err)
            self.close_connection = True
        except CrankError as err:
            error = type(err).__name__
            if self._response_started:  # too late for its status: the response is cut short
                aborted = "bad_response"
            self._reject(err)
        finally:
            if self.core.draining:
                self.close_connection = True
            self._log_access(started, error, aborted)

    def _request_id(self) -> str:
        """The client's X-Request-Id when it is sane, otherwise a new one."""
        rid = self.headers.get("X-Request-Id", "")
        if 0 < len(rid) <= 128 and _REQUEST_ID_RE.match(rid):
            return rid
        return f"{_request_ids.getrandbits(128):032x}"

    def _log_access(self, started: float, error: str | None, aborted: str | None) -> None:
        """One access line and the metrics. An exchange cut short (client gone, connector
        lost, idle timeout) is ``outcome=aborted`` with its reason, whatever status had
        gone out: a 200 whose body was cut off is no success."""
        seconds = time.monotonic() - started
        out = self._writer.bytes_written
        self.core.metrics.observe(self._route, self._status, seconds, self._bytes_in, out, error,
                                  aborted)
        if access_log.isEnabledFor(logging.INFO):
            outcome = f"aborted:{aborted}" if aborted else "error" if error else "ok"
            access_log.info(
                '%s %s "%s %s" route=%s status=%s outcome=%s in=%d out=%d %.1fms connector=%s'
                " protocol=%s request_id=%s retries=%d",
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds)),
                self.client_address[0], self.command, self.path[:500], self._route,
                self._status or "-", outcome, self._bytes_in, out, seconds * 1000,
                self._connector, self._protocol, self.request_id, self._retries,
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
            proxy_host=cfg.proxy_host_header,
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
        deadline = time.monotonic() + cfg.connector_max_wait
        unanswered: SocketClosedBeforeResponse | None = None
        while True:
            try:
                sock, stream = self._borrow(target.split("?", 1)[0], head, deadline)
            except (NoConnectorAvailable, NoRoute):
                if unanswered is None:
                    raise
                raise unanswered from None  # no other socket in time: the first failure counts
            if stream is not None:
                v3.exchange(self, sock, stream, length)
                return
            try:
                v1.exchange(self, sock, length)
                return
            except SocketClosedBeforeResponse as err:
                if not self._may_retry(has_body, deadline):
                    raise
                unanswered = err
                self._retries += 1
                self.core.metrics.retries.labels(self._route).inc()
                log.info("retrying %s %s [%s] on another socket: %s", self.command,
                         self.path[:200], self.request_id, err)

    def _may_retry(self, has_body: bool, deadline: float) -> bool:
        """Idempotent, nothing of the body sent, time left, nothing written to the client
        (nginx's proxy_next_upstream rule)."""
        return (self.command in _IDEMPOTENT and not has_body and not self._response_started
                and time.monotonic() < deadline and self._retries < _MAX_SEND_ATTEMPTS)

    def _borrow(self, route: str, head: RequestHead,
                deadline: float) -> tuple[ConnectorSocket, RouterStream | None]:
        """Borrow a socket and send the request head, skipping sockets that died while idle.

        Returns the socket, and the stream when it is a v3 socket.
        """
        registry = self.core.registry
        host = self.headers.get("Host")
        for _ in range(_MAX_SEND_ATTEMPTS):
            sock = registry.acquire(route, max(0.0, deadline - time.monotonic()), host,
                                    gone=self.client_gone)
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

    def client_gone(self) -> bool:
        """Has the client closed its connection? (Checked while waiting on a connector.)"""
        try:
            if not readable_now(self.connection):
                return False
            # socket.socket.recv reads the raw stream even under TLS, where only EOF matters
            return socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def aborted(self, reason: str, kind: str = "connector_lost") -> Exception:
        """The exception that drops the client connection mid-response."""
        return Aborted(reason, kind)

    def start_response(self, text: str, ws: RouterWebSocket | None = None) -> ResponseState:
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
        state = ResponseState(self, head)
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

    def _write_error(self, status: int, text: str) -> None:
        reason = phrase(status)
        body = f"{status} {reason}: {text}\n".encode("utf-8", "replace")
        head = [
            f"HTTP/1.1 {status} {reason}",
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
