"""The client-facing handler: one worker thread per connection, one request at a time.

The worker borrows a connector socket from the registry, sends the request down it, and
streams the response back. Errors map to statuses in one place (:func:`status_for`); once the
response has started, a failure can only abort the client connection.
"""
from __future__ import annotations

import logging
import time
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler

from ..errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    CrankError,
    HeadersTooLarge,
    MethodNotAllowed,
    NoConnectorAvailable,
    NoRoute,
    SocketClosedBeforeResponse,
    UriTooLong,
)
from ..hooks import Reject
from ..protocol import (
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    encode_request,
    filter_request_headers,
    request_text,
    tunnel,
)
from ..protocol.headers import connection_tokens
from ..protocol.http_head import ClientHead, parse_client_head
from . import tunnel as tunnel_relay
from . import v1, v3_relay
from .core import RouterCore
from .exchange import Aborted, Exchange
from .http_io import read_request_head, request_framing
from .pool import ConnectorSocket
from .response import error_response, rejection_response
from .v3 import RouterStream
from .websocket import ConnectionClosed

log = logging.getLogger(__name__)

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
            self.core.metrics.observe("(none)", err.status, 0.0, 0, 0, type(err).__name__)
            self.close_connection = True
            self._write_error(err.status, str(err), None, close=True)
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

    # -- the exchange ------------------------------------------------------------------------

    def _answer_health(self) -> None:
        """The load balancer's check (``health_path``): 200; 503 once the router stops, and
        within ``startup_grace`` of the start until a first connector registered."""
        core = self.core
        draining = core.draining
        starting = (time.monotonic() - core.started_at < core.config.startup_grace
                    and not any(sockets for groups in core.registry.snapshot().values()
                                for sockets in groups.values()))
        state = "draining" if draining else "starting" if starting else "ok"
        status = 200 if state == "ok" else 503
        body = f'{{"status": "{state}"}}\n'.encode()
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Service Unavailable'}\r\n"
                "Content-Type: application/json\r\nCache-Control: no-store\r\n"
                f"Content-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if draining or self.close_connection else "")
                + "\r\n").encode()
        if draining:
            self.close_connection = True
        try:
            self.wfile.write(head if self.command == "HEAD" else head + body)
        except OSError:
            self.close_connection = True

    def _handle(self) -> None:
        health = self.core.config.health_path
        if health is not None and self.path.split("?", 1)[0] == health \
                and self.command in ("GET", "HEAD"):
            self._answer_health()
            return
        ex = Exchange(
            self.core, method=self.command, path=self.path, version=self.request_version,
            request_line=self.requestline, headers=self.headers,
            client_ip=self.client_address[0], connection=self.connection, rfile=self.rfile,
            wfile=self.wfile, keep_alive=not self.close_connection,
        )
        if self.core.trusted_proxies is not None:  # the client behind a trusted proxy
            ex.client_address = self.core.trusted_proxies.client_of(ex.client_ip, self.headers)
        try:
            forward(ex)
        except Reject as rej:
            self._answer_rejected(ex, rej)
        except ClientGone as err:
            ex.failure = err
            ex.error, ex.abort_kind = "ClientGone", "client_gone"
            log.debug("client %s went away [%s]: %s", ex.client_ip, ex.request_id, err)
            ex.close_connection = True
        except Aborted as err:
            ex.failure = err
            ex.error, ex.abort_kind = "Aborted", err.kind
            try:
                ex.writer.flush()  # what arrived goes out; the close then marks it short
            except ClientGone:
                pass
            log.warning("aborted response to %s %s [%s]: %s", ex.method, ex.path[:200],
                        ex.request_id, err)
            ex.close_connection = True
        except CrankError as err:
            ex.failure = err
            ex.failed(err)
            self._reject(ex, err)
        finally:
            if self.core.draining:
                ex.close_connection = True
            self.close_connection = ex.close_connection
            ex.complete()

    # -- errors ------------------------------------------------------------------------------

    def _answer_rejected(self, ex: Exchange, rej: Reject) -> None:
        """A listener answered the request itself; nothing (more) of it reaches a connector."""
        ex.rejected, ex.status = True, rej.status
        log.info("listener rejected %s %r from %s with %d [%s]", ex.method, ex.path[:200],
                 ex.client_address, rej.status, ex.request_id)
        if ex.body_pending:
            ex.close_connection = True
        data = rejection_response(rej, ex.request_id, ex.close_connection,
                                  head=ex.method == "HEAD")
        try:
            ex.writer.write_raw(data)
        except (OSError, ClientGone):
            ex.close_connection = True

    def _reject(self, ex: Exchange, err: CrankError) -> None:
        status = err.status
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(level, "%d for %s %r from %s [%s]: %s", status, ex.method, ex.path[:200],
                ex.client_ip, ex.request_id, err)
        if ex.response_started:
            ex.close_connection = True
            return
        if status in (400, 414, 431) or ex.body_pending:
            ex.close_connection = True
        if not self._write_error(status, str(err), ex.request_id, ex.close_connection):
            ex.close_connection = True

    def _write_error(self, status: int, text: str, request_id: str | None, close: bool) -> bool:
        """Write an error response; False (and the connection closes) when it failed."""
        data = error_response(status, text, request_id, close, head=self.command == "HEAD")
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return False
        return True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s - " + format, self.client_address[0], *args)


# -- forwarding one exchange -------------------------------------------------------------------


def forward(ex: Exchange) -> None:
    """Send ``ex`` to a connector and relay the answer; on a v1 socket that closed
    unanswered, retry on another when :func:`_may_retry` allows."""
    cfg = ex.config
    if ex.method in ("TRACE", "CONNECT"):
        raise MethodNotAllowed(f"{ex.method} is not allowed")
    target = _raw_target(ex.request_line)
    length = request_framing(ex.headers)
    has_body = length != 0
    upgrade = tunnel_relay.wanted(ex)
    if upgrade and has_body:
        raise BadRequest("a websocket upgrade request has no body")
    ex.body_pending = has_body
    if has_body:
        # an unread body would be parsed as the next request: only a full read may keep alive
        ex.close_connection = True
    if ex.info is not None:  # listeners see the route the request is headed for
        ex.route = ex.core.registry.route_name(target)
    head = ex.before_proxy(_request_head(ex, target, has_body, upgrade))
    if has_body:
        ex.open_body(length)
    deadline = time.monotonic() + cfg.connector_max_wait
    unanswered: SocketClosedBeforeResponse | None = None
    while True:
        try:
            sock, stream = _borrow(ex, target.split("?", 1)[0], head, deadline, upgrade)
        except (NoConnectorAvailable, NoRoute) as err:
            ex.failed_to_acquire()
            if unanswered is not None:
                raise unanswered from None  # no other socket in time: the first one counts
            if isinstance(err, NoRoute) and _warming_up(ex):
                raise NoConnectorAvailable(f"{err}: the router started "
                                           f"{time.monotonic() - ex.core.started_at:.1f}s ago "
                                           "and its connectors may not have registered yet") \
                    from None
            raise
        if upgrade:
            tunnel_relay.relay(ex, sock, stream)
            return
        if stream is not None:
            v3_relay.exchange(ex, sock, stream, length)
            return
        try:
            v1.exchange(ex, sock, length)
            return
        except SocketClosedBeforeResponse as err:
            if not _may_retry(ex, has_body, deadline):
                raise
            unanswered = err
            ex.retries += 1
            ex.core.metrics.retries.labels(ex.route).inc()
            log.info("retrying %s %s [%s] on another socket: %s", ex.method, ex.path[:200],
                     ex.request_id, err)


def _warming_up(ex: Exchange) -> bool:
    """Within ``startup_grace`` of the start: an unknown route is 503 (a load balancer tries
    another router), not 404."""
    return time.monotonic() - ex.core.started_at < ex.config.startup_grace


def _raw_target(request_line: str) -> str:
    parts = request_line.split(" ")
    target = parts[1] if len(parts) == 3 else ""
    if not target.isascii() or not target.isprintable():
        raise BadRequest("request target must be printable ASCII")
    if not target.startswith("/"):
        raise BadRequest(f"request target must be origin-form, got {target[:80]!r}")
    return target


def _request_head(ex: Exchange, target: str, has_body: bool, upgrade: bool) -> RequestHead:
    """The head sent to the connector: the client's, with the forwarding headers; an upgrade
    keeps ``Upgrade`` and ``Connection`` and has a body (the upgraded connection's bytes)."""
    cfg = ex.config
    headers = filter_request_headers(
        ex.headers.items(),
        client_ip=ex.client_ip,
        proto="https" if cfg.tls_cert else "http",
        by=ex.core.by_name,
        via_name=cfg.via_name,
        discard_client_forwarded=cfg.discard_client_forwarded,
        x_forwarded=cfg.x_forwarded_headers,
        proxy_host=cfg.proxy_host_header,
    )
    if ex.headers.get("X-Request-Id") != ex.request_id:
        headers = [(n, v) for n, v in headers if n.lower() != "x-request-id"]
        headers.append(("X-Request-Id", ex.request_id))
    if upgrade:
        headers = tunnel.upgrade_headers(headers)
        has_body = True
    try:
        return RequestHead(
            method=ex.method,
            target=target,
            headers=tuple(headers),
            marker=MARKER_BODY_FOLLOWS if has_body else MARKER_NO_BODY,
        )
    except CrankError as err:
        raise BadRequest(str(err)) from err


def _may_retry(ex: Exchange, has_body: bool, deadline: float) -> bool:
    """Idempotent, nothing of the body sent, time left, nothing written to the client
    (nginx's proxy_next_upstream rule)."""
    return (ex.method in _IDEMPOTENT and not has_body and not ex.response_started
            and time.monotonic() < deadline and ex.retries < _MAX_SEND_ATTEMPTS)


def _borrow(ex: Exchange, route: str, head: RequestHead, deadline: float,
            upgrade: bool = False) -> tuple[ConnectorSocket, RouterStream | None]:
    """Borrow a socket and send the request head, skipping sockets that died while idle.

    Returns the socket, and the stream when it is a v3 socket.
    """
    registry = ex.core.registry
    host = ex.headers.get("Host")
    for _ in range(_MAX_SEND_ATTEMPTS):
        began = time.monotonic()
        try:
            sock = registry.acquire(route, max(0.0, deadline - began), host,
                                    gone=ex.client_gone, tunnel=upgrade)
        finally:
            ex.socket_wait += time.monotonic() - began
        ex.route, ex.connector, ex.protocol = (sock.route, sock.connector_instance_id,
                                               sock.protocol)
        ex.component, ex.service_address = sock.component_name, (sock.remote_ip,
                                                                 sock.remote_port)
        try:
            if sock.session is None:
                sock.ws.send(encode_request(head))
                return sock, None
            stream = sock.session.open_stream()
            try:
                v3_relay.send_head(stream, request_text(head), end_stream=not head.has_body)
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
