"""The registration listener: connectors register and deregister websockets here.

Admin endpoints will live on this port too, never on the client port.
"""
from __future__ import annotations

import itertools
import logging
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import BadRequest, RemoteProtocolError
from ..protocol import tunnel
from ..protocol.http_head import parse_client_head
from ..protocol.limits import MESSAGE_LIMIT_HEADER, peer_message_limit
from ..protocol.registration import LEGACY_HEADER, negotiate, offered_subprotocols
from ..protocol.routes import reachable, validate_route
from . import admin
from .pool import ConnectorSocket
from .v3_socket import V3Session
from .websocket import LockedSocket, RouterWebSocket

if TYPE_CHECKING:
    from .core import RouterCore

log = logging.getLogger(__name__)

_ws_ids = itertools.count(1)


class HeadReader:
    """Wraps rfile while the head is read, to tell a blank line from end-of-file (the
    standard parser takes both as the end of the headers) and to keep the head's bytes for
    the strict parser (the standard one splits a line at a bare CR)."""

    def __init__(self, rfile: Any) -> None:
        self._rfile = rfile
        self.last = b""
        self.lines: list[bytes] = []  # bounded by the standard parser's line and header caps

    def readline(self, size: int = -1) -> bytes:
        self.last = self._rfile.readline(size)
        self.lines.append(self.last)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)

class RegistrationHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "crank_sync"
    core: RouterCore
    #: Deadline of the request head being read (None when no head is being read).
    _head_key: int | None = None

    def setup(self) -> None:
        self.core = self.server.core  # type: ignore[attr-defined]
        self.timeout = self.core.config.idle_timeout  # type: ignore[misc]
        super().setup()

    def handle_one_request(self) -> None:
        """The standard handling, with the whole request head due within ``header_timeout``
        of the start of the wait for it. A connection that says nothing or trickles is closed
        (and counts as pending until its first head is in); so is a keep-alive connection
        left idle that long, so an idle admin connection holds no thread for long either."""
        self._plain_rfile = self.rfile
        self._head_key = self.core.deadlines.add(
            self.connection, self.core.config.header_timeout,
            f"registration request head from {self.client_address[0]}")
        self.rfile = self._head_reader = HeadReader(self.rfile)  # type: ignore[assignment]
        try:
            super().handle_one_request()
        except OSError as err:
            if self._head_key is None:  # failed after the head: as any other error
                raise
            log.debug("registration connection from %s failed during its head: %r",
                      self.client_address[0], err)
            self.close_connection = True
        finally:
            self._head_read()

    def _head_read(self) -> None:
        """The head is in (or never will be): end its deadline; no longer pending."""
        if self._head_key is None:
            return
        self.core.deadlines.cancel(self._head_key)
        self._head_key = None
        self.rfile = self._plain_rfile
        self.server.head_done(self.request)  # type: ignore[attr-defined]

    def parse_request(self) -> bool:
        """The standard parse, then the network allow-list, which covers the whole port."""
        try:
            ok = super().parse_request()
            complete = self._head_reader.last in (b"\r\n", b"\n")
        finally:
            self._head_read()
        if not ok:
            return False
        if not complete:
            # the head ended at end-of-file (client gone or deadline), not at a blank line
            log.info("incomplete registration request head from %s: dropped",
                     self.client_address[0])
            self.close_connection = True
            return False
        try:  # the client port's rules: no head that two parsers could read differently
            parse_client_head(b"".join(self._head_reader.lines))
        except RemoteProtocolError as err:
            self._refuse(err.status, f"malformed request head: {err}")
            return False
        if not self.core.guard.ip_allowed(self.client_address[0]):
            self._refuse(403, "this address may not use the registration port")
            return False
        return True

    def _admin_allowed(self) -> bool:
        if self.core.guard.admin_ok(self.headers.get("Authorization")):
            return True
        log.warning("admin request %s %s from %s without a valid token", self.command,
                    self.path[:200], self.client_address[0])
        self.close_connection = True
        self._plain(403, "a valid admin token is required\n")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        if path.rstrip("/") == "/register":
            self._upgrade(deregister=False)
        elif path.rstrip("/") == "/deregister":
            self._upgrade(deregister=True)
        elif path in admin.GET_ROUTES:
            if path in admin.PUBLIC or self._admin_allowed():
                self._send(*admin.GET_ROUTES[path](self.core))
        elif path in admin.GET_QUERY_ROUTES:
            if self._admin_allowed():
                self._send(*admin.GET_QUERY_ROUTES[path](self.core, self._query()))
        else:
            self._plain(404, "not found\n")

    def do_HEAD(self) -> None:  # noqa: N802
        self._plain(405, "HEAD is not supported here\n")

    def do_PUT(self) -> None:  # noqa: N802
        self._dark_mode(True)

    def do_DELETE(self) -> None:  # noqa: N802
        self._dark_mode(False)

    def _dark_mode(self, dark: bool) -> None:
        path = urlsplit(self.path).path
        prefix = "/api/dark-mode/"
        if not path.startswith(prefix):
            self._plain(404, "not found\n")
            return
        if not self._admin_allowed():
            return
        status, content_type, body = admin.set_dark_mode(self.core, unquote(path[len(prefix):]),
                                                         dark)
        if status == 200:
            log.info("dark mode %s for %s (by %s)", "on" if dark else "off",
                     path[len(prefix):], self.client_address[0])
        self._send(status, content_type, body)

    def do_TRACE(self) -> None:  # noqa: N802
        self._plain(405, "TRACE is not allowed\n")

    def _plain(self, status: int, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, reason: str) -> None:
        log.warning("refused %s from %s: %s", self.path[:200], self.client_address[0], reason)
        self.close_connection = True
        self._plain(status, reason + "\n")

    def _query(self) -> dict[str, str]:
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        return {k: v[0] for k, v in query.items()}

    def _upgrade(self, deregister: bool) -> None:
        began = time.monotonic()
        headers = self.headers
        guard = self.core.guard
        if not guard.token_ok(headers.get("Authorization")):
            # the token itself is never logged
            return self._refuse(403, "missing or invalid registration token")
        if not deregister and not guard.rate_ok(self.client_address[0]):
            return self._refuse(429, "too many registrations from this address")
        if "websocket" not in (headers.get("Upgrade") or "").lower():
            return self._refuse(400, "a websocket upgrade is required")
        if not headers.get("Sec-WebSocket-Key") or headers.get("Sec-WebSocket-Version") != "13":
            return self._refuse(400, "Sec-WebSocket-Key and Sec-WebSocket-Version: 13 required")
        offered = offered_subprotocols(headers.get_all("Sec-WebSocket-Protocol") or [])
        try:
            version, echo = negotiate(offered, headers.get(LEGACY_HEADER),
                                      self.core.config.protocols)
            # a missing or empty Route header is the catch-all (PROTOCOL.md)
            route = validate_route(headers.get("Route") or "", empty_is_catch_all=True)
        except (BadRequest, ValueError) as err:
            return self._refuse(400, str(err))
        query = self._query()
        ip = self.client_address[0]
        instance = query.get("connectorInstanceID") or ""
        component = query.get("componentName") or ""
        session = V3Session() if version == "3.0" else None
        ws = self._accept(echo, version, session)
        if ws is None:
            return
        self.close_connection = True
        if deregister:
            self._deregister(ws, instance)
            return
        resolver = self.core.config.route_resolver
        if not reachable(route, resolver):
            reason = (f"route {route!r} cannot be reached: this router routes by the first "
                      "path segment (see route_resolver)")
            log.warning("refused a connector from %s (%s): %s", ip, instance or "-", reason)
            ws.close(1008, reason[:123])  # a close reason is at most 123 bytes
            self._wait(ws)
            return
        sock = ConnectorSocket(
            ws=ws,
            route=route,
            connector_instance_id=instance or f"unknown-{ip}",
            component_name=component,
            remote_ip=ip,
            protocol=f"cranker_{version}",
            remote_port=int(self.client_address[1]),
            domain=(headers.get("Domain") or "*").strip() if session else "*",
            session=session,
            message_limit=peer_message_limit(headers.get(MESSAGE_LIMIT_HEADER)),
            tunnels=_offers_tunnels(headers),
        )
        self.core.metrics.connector_seen(sock)  # first, so the dashboard knows it when listed
        if not self.core.registry.add(sock, began):
            ws.close(1001, "deregistered or router stopping")
        else:
            self.core.metrics.registrations.labels(sock.protocol).inc()
        log.debug("registered %s socket for route %r from %s (%s)", sock.protocol, route, ip,
                  sock.connector_instance_id)
        self._wait(ws)
        self.core.registry.remove(sock)
        self.core.metrics.connector_seen(sock)

    def _accept(self, subprotocol: str | None, version: str,
                session: V3Session | None) -> RouterWebSocket | None:
        environ: dict[str, Any] = {"werkzeug.socket": LockedSocket(self.connection)}
        for name in set(self.headers.keys()):
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = ", ".join(self.headers.get_all(name) or [])
        cfg = self.core.config
        extra = [(b"CrankerProtocol", version.encode())] if version == "1.0" else []
        extra.append((MESSAGE_LIMIT_HEADER.encode(), str(cfg.max_message_bytes).encode()))
        if _offers_tunnels(self.headers):  # accepted: websocket upgrades may come its way
            extra.append((tunnel.CAPABILITIES_HEADER.encode(), tunnel.WEBSOCKET.encode()))
        try:
            ws = RouterWebSocket(
                environ,
                subprotocol=subprotocol,
                extra_headers=extra,
                ping_interval=cfg.ping_interval,
                max_message_size=cfg.max_message_bytes,
                buffer_limit=cfg.socket_buffer_bytes,
                thread_name=f"crank-router-ws-{next(_ws_ids)}",
                on_message=session.dispatch if session else None,
                on_closed=session.on_socket_closed if session else None,
            )
        except Exception as err:  # noqa: BLE001 - wsproto refuses odd handshakes in many ways
            self._refuse(400, f"websocket handshake failed: {err}")
            return None
        if not ws.connected:
            return None
        if session is not None:
            session.ws = ws
        return ws

    def _deregister(self, ws: RouterWebSocket, instance: str) -> None:
        if not instance:
            log.warning("deregistration from %s without connectorInstanceID: ignored",
                        self.client_address[0])
        else:
            self.core.metrics.deregistrations.inc()
            taken = self.core.registry.take_idle_of(instance)
            for sock in taken:
                if sock.session is not None:
                    sock.session.drain()
                else:
                    sock.ws.close(1001, "Deregistered")
            log.info("deregistered %s: closed %d idle sockets", instance, len(taken))
        ws.close(1000, "Deregister complete")
        self._wait(ws)

    def _wait(self, ws: RouterWebSocket) -> None:
        """Read the websocket on this thread until its close handshake has finished."""
        ws.run_reader()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("registration %s - " + format, self.client_address[0], *args)


def _offers_tunnels(headers: Any) -> bool:
    """The connector offered to carry websocket upgrades (crank_sync's extension)."""
    offered = tunnel.capabilities(", ".join(headers.get_all(tunnel.CAPABILITIES_HEADER) or []))
    return tunnel.WEBSOCKET in offered
