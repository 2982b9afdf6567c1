"""Forwarding one exchange: check the request, borrow a connector socket, send the head,
and hand over to the v1, v3 or tunnel relay; a v1 socket that closed unanswered is retried on
another when nginx's rule allows.
"""
from __future__ import annotations

import logging
import time

from ..errors import (
    BadGateway,
    BadRequest,
    CrankError,
    MethodNotAllowed,
    NoConnectorAvailable,
    NoRoute,
    SocketClosedBeforeResponse,
)
from ..protocol import (
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    encode_request,
    filter_request_headers,
    request_text,
    tunnel,
)
from . import tunnel as tunnel_relay
from . import v1, v3_relay
from .exchange import Exchange
from .http_io import request_framing
from .pool import ConnectorSocket
from .v3 import RouterStream
from .websocket import ConnectionClosed

log = logging.getLogger(__name__)

#: How many dead sockets a request may skip before giving up with 502.
_MAX_SEND_ATTEMPTS = 5
#: Requests retried on another v1 socket when theirs closed unanswered (nginx's rule).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def forward(ex: Exchange) -> None:
    """Send ``ex`` to a connector and relay the answer; on a v1 socket that closed
    unanswered, retry on another when :func:`_may_retry` allows."""
    target, length, upgrade = _check(ex)
    has_body = length != 0
    head = ex.before_proxy(_request_head(ex, target, has_body, upgrade))
    if has_body:
        ex.open_body(length)
    _relay(ex, target, head, length, upgrade)


def _check(ex: Exchange) -> tuple[str, int | None, bool]:
    """The request's origin-form target, body length (None: chunked) and whether it asks
    for a websocket upgrade; refuses what no connector may see."""
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
    return target, length, upgrade


def _relay(ex: Exchange, target: str, head: RequestHead, length: int | None,
           upgrade: bool) -> None:
    """Borrow a socket for ``head`` and relay the exchange over it, retrying as allowed."""
    has_body = length != 0
    deadline = time.monotonic() + ex.config.connector_max_wait
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
