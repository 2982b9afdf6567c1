"""One connector websocket on its own thread: register, wait for a request, replay it.

v1 carries one request per socket: the worker asks its link for a replacement the moment a
request arrives, answers it, closes with 1000 and ends.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import (
    ListenerFailed,
    ReadTimeout,
    RemoteProtocolError,
    TargetError,
    WebSocketError,
)
from ..protocol import (
    RequestHead,
    ResponseHead,
    encode_response_head,
    parse_request,
    tunnel,
)
from ..protocol.limits import DEFAULT_MESSAGE_LIMIT, MESSAGE_LIMIT_HEADER, peer_message_limit
from ..ws.frames import Opcode
from ..ws.ping import silent_too_long
from . import tunnel as connector_tunnel
from . import v1_request
from .frames import FrameReader, small_body
from .handshake import open_websocket
from .registering import SocketState, chosen_version, endpoint
from .registering import handshake_headers as handshake_headers  # tests import it from here
from .target import (
    Cancel,
    TargetClient,
    TargetResponse,
    _Cancelled,
    failure_reason,
    iter_response,
)
from .v3 import V3Socket
from .websocket import ConnectorWebSocket

if TYPE_CHECKING:
    from .link import RouterLink

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 3.0
#: While a response streams, how often the socket is polled for the router's cancel (a poll
#: per chunk cost a system call every 64 KiB).
CANCEL_CHECK_INTERVAL = 0.05


class SocketWorker:
    """One websocket to one router, on one of the link's ``crank-connector-socket-N`` threads
    (reused: a v1 socket lives for one request, its thread for many)."""

    def __init__(self, link: RouterLink) -> None:
        self.link = link
        self.state = SocketState.CONNECTING
        self.ws: ConnectorWebSocket | None = None
        self.v3: V3Socket | None = None
        #: The largest message the router takes (announced in its 101, else 16 KiB).
        self.message_limit = DEFAULT_MESSAGE_LIMIT
        #: The router accepted websocket upgrades through the tunnel on this socket.
        self.tunnels = False
        #: True while a registration handshake is under way (stop() waits for those).
        self.handshaking = False
        #: The thread running this worker, once it runs.
        self.name = "crank-connector-socket (not started)"
        #: Set once the worker has finished and left its link.
        self.done = threading.Event()

    def start(self) -> None:
        self.link.threads.submit(self._run)

    @property
    def inflight(self) -> int:
        """Requests this socket is serving now."""
        if self.state is SocketState.BUSY:
            return 1
        v3_socket = self.v3
        return v3_socket.inflight if v3_socket is not None else 0

    def abort(self) -> None:
        """Unblock a worker with nothing in flight (used on stop)."""
        ws = self.ws
        if ws is not None and self.inflight == 0:
            ws.shutdown()

    def force_close(self) -> None:
        """Close even a busy socket with 1001 (stop() ran out of time)."""
        ws = self.ws
        if ws is not None:
            try:
                ws.send_close(1001, b"connector stopping")
            except WebSocketError:
                pass
            ws.shutdown()

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self) -> None:
        self.name = threading.current_thread().name
        try:
            while not self.link.stopping.is_set():
                if not self.link.wants_socket(self):
                    return
                ws = self._connect()
                if ws is None:
                    continue
                if self.v3 is not None:
                    try:
                        self.v3.run()
                    finally:
                        self.v3 = None
                        self._discard(ws)
                    if not self.link.stopping.is_set():
                        self.link.on_socket_lost(self)
                    continue
                reader = FrameReader(ws)
                request = self._wait_for_request(ws, reader)
                if request is None:
                    self._discard(ws)
                    if not self.link.stopping.is_set():
                        self.link.on_socket_lost(self)
                    continue
                self.state = SocketState.BUSY
                self.link.on_request(self)
                try:
                    self._serve(ws, request, reader)
                finally:
                    self._discard(ws)
                return
        except Exception:  # noqa: BLE001 - a worker must never die silently
            log.exception("connector socket worker failed")
        finally:
            self.state = SocketState.DONE
            self.link.on_exit(self)
            self.done.set()

    def _connect(self) -> ConnectorWebSocket | None:
        cfg = self.link.config
        url = endpoint(self.link.url, "register", cfg.connector_instance_id, cfg.component_name)
        if not self.link.begin_handshake(self):
            return None
        try:
            ws = open_websocket(
                url,
                timeout=cfg.connect_timeout,
                header=self.link.upgrade_headers(),  # a listener's fresh token, say
                address=self.link.address,
                sslopt=self.link.sslopt,
                sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            )
        except (WebSocketError, ListenerFailed) as err:
            self.handshaking = False
            self.link.stopping.wait(self.link.on_connect_failed(self, err))
            return None
        self.handshaking = False
        version = chosen_version(ws, cfg.protocols)
        if version is None:
            delay = self.link.next_backoff()
            log.warning("router %s picked a protocol we did not offer; retrying in %.2fs",
                        self.link.shown, delay)
            self._discard(ws)
            self.link.stopping.wait(delay)
            return None
        self.ws = ws
        self.message_limit = peer_message_limit(ws.headers.get(MESSAGE_LIMIT_HEADER.lower()))
        self.tunnels = self.link.offers_tunnels and tunnel.WEBSOCKET in tunnel.capabilities(
            ws.headers.get(tunnel.CAPABILITIES_HEADER.lower()))
        # registered even if stop() began meanwhile: stop() waits for handshakes to finish
        # before it deregisters, so the router closes this socket with the others
        if version == "3.0":
            self.v3 = V3Socket(self.link, ws, self.link.pool, self.message_limit, self.tunnels)
            self.state = SocketState.V3
        else:
            self.state = SocketState.IDLE
        self.link.on_registered(self, version)
        return ws

    def _discard(self, ws: ConnectorWebSocket) -> None:
        self.state = SocketState.CONNECTING
        self.ws = None
        ws.shutdown()

    def _wait_for_request(self, ws: ConnectorWebSocket, reader: FrameReader) -> str | None:
        """Idle: answer pings, ping the router, return the request text or None if closed.

        ``reader`` reads whole frames at a time (websocket-client takes three reads for one);
        what it holds beyond the request is for :meth:`_serve`."""
        interval = self.link.config.ping_interval
        ws.settimeout(interval)
        while True:  # until the router closes it (deregistration) or stop() aborts it
            try:
                opcode, data = reader.recv()
            except ReadTimeout:
                if silent_too_long(reader.last_heard, interval, time.monotonic()):
                    log.warning("router %s silent for %.0fs: reconnecting", self.link.shown,
                                2 * interval)
                    return None
                try:
                    ws.ping()
                except WebSocketError:
                    return None
                continue
            except WebSocketError as err:
                if not self.link.stopping.is_set():
                    log.info("idle socket to %s lost: %r", self.link.shown, err)
                return None
            if opcode == Opcode.TEXT:
                return data.decode("utf-8")
            if opcode == Opcode.CLOSE:
                log.debug("router closed idle socket: %r", data[2:])
                return None
            if opcode == Opcode.BINARY:
                log.warning("router sent binary data to an idle v1 socket; closing it")
                return None

    # -- one request -------------------------------------------------------------------------

    def _serve(self, ws: ConnectorWebSocket, text: str, reader: FrameReader) -> None:
        cfg = self.link.config
        ws.settimeout(cfg.idle_timeout)
        try:
            head = parse_request(text)
        except RemoteProtocolError as err:
            log.warning("bad request from router %s: %s", self.link.shown, err)
            self._close(ws, 1008, "bad request message")
            return
        if not head.has_body and v1_request.closed_after_head(reader, head.label):
            return
        if self.tunnels and tunnel.is_websocket_upgrade(head.headers):
            self._tunnel(ws, head)
            return
        cancel = Cancel()
        watcher = self.link.watcher
        # once the body is in, watch for a cancel while the target answers
        body = (v1_request.request_body(reader, lambda: watcher.watch(ws, cancel.cancel))
                if head.has_body else None)
        if body is None:
            watcher.watch(ws, cancel.cancel)
        resp: TargetResponse | None = None
        try:
            resp = self.link.send(head, body, cancel, "1.0")
        except _Cancelled:
            log.info("request %s cancelled by the router", head.label)
            return
        except TargetError as err:
            if cancel.cancelled:
                log.info("request %s cancelled: the client went away", head.label)
                return
            log.warning("target failed for %s: %r", head.label, err)
            self._close(ws, 1011, f"target failed: {failure_reason(err)}")
            return
        finally:
            # on plain TCP the watch goes on while the response is relayed (see _respond)
            if resp is None or isinstance(ws.sock, ssl.SSLSocket):
                watcher.unwatch(ws)
        self._respond(ws, head, resp, cancel)

    def _tunnel(self, ws: ConnectorWebSocket, head: RequestHead) -> None:
        """A websocket upgrade (connector/tunnel.py); the service's refusal is relayed."""
        assert isinstance(self.link.target, TargetClient)
        try:
            target = self.link.target
            refusal = self.link.tunnel(head, "1.0", lambda h, ended: connector_tunnel.serve_v1(
                target, ws, h, self.message_limit, ended))
        except TargetError as err:
            log.warning("target failed for %s: %r", head.label, err)
            self._close(ws, 1011, f"target failed: {failure_reason(err)}")
            return
        if refusal is not None:
            self._respond(ws, head, refusal, Cancel())

    def _respond(self, ws: ConnectorWebSocket, head: RequestHead,
                 resp: TargetResponse, cancel: Cancel) -> None:
        complete = False
        try:
            pending = self._head_frames(ws, resp)
            if pending is None:
                return
            chunk_size = min(self.link.config.chunk_size, self.message_limit)
            # a target silent mid-response (a long poll, server-sent events) blocks this thread
            # in the target's read: the watcher notices the router's close meanwhile. On plain
            # TCP only: a TLS socket must not be read while this thread writes to it, so there
            # the socket is polled between chunks instead
            watched = not isinstance(ws.sock, ssl.SSLSocket)
            if watched:
                self.link.watcher.watch(ws, cancel.cancel)  # a no-op when still watched
            if not small_body(resp, chunk_size):
                ws.send_frames(pending)
                pending = []
            complete = self._send_body(ws, head, iter_response(resp, chunk_size), cancel,
                                       pending, watched)
            if complete:
                self.link.watcher.unwatch(ws)
                self._close(ws, 1000, "")
        except _Cancelled:
            log.info("request %s cancelled by the router", head.label)
        except WebSocketError as err:
            log.info("router socket lost while responding to %s: %r", head.label, err)
        finally:
            self.link.watcher.unwatch(ws)
            if not complete:
                resp.close()
            resp.release_conn()

    def _head_frames(self, ws: ConnectorWebSocket,
                     resp: TargetResponse) -> list[tuple[int, bytes]] | None:
        """The response head as the frame to send (it goes out with the first body chunk, or
        alone if the body is empty or slow); None after closing with 1011 on a bad head."""
        try:
            response_head = ResponseHead(status=resp.status, reason=resp.reason or "",
                                         headers=tuple(resp.headers.items()))
        except Exception as err:  # noqa: BLE001 - any invalid head becomes 1011
            log.warning("target sent an unusable response head: %s", err)
            self._close(ws, 1011, "bad response from target")
            return None
        return [(Opcode.TEXT, encode_response_head(response_head).encode())]

    def _send_body(self, ws: ConnectorWebSocket, head: RequestHead, chunks: Iterator[bytes],
                   cancel: Cancel, pending: list[tuple[int, bytes]], watched: bool) -> bool:
        """Relay the body (after the ``pending`` frames): True when all of it went out, False
        when the request was cancelled or the target failed (then closed with 1011)."""
        next_check = 0.0
        while True:
            try:
                chunk = next(chunks, None)
            except TargetError as err:
                if cancel.cancelled:
                    log.info("request %s cancelled: the client went away", head.label)
                    return False
                log.warning("target failed mid-body for %s: %r", head.label, err)
                if pending:
                    ws.send_frames(pending)
                self._close(ws, 1011, f"target failed mid-body: {failure_reason(err)}")
                return False
            if chunk is None:
                break
            if cancel.cancelled:
                log.info("request %s cancelled", head.label)
                return False
            now = time.monotonic()
            if not watched and now >= next_check:
                if self._router_cancelled(ws):
                    log.info("request %s cancelled by the router", head.label)
                    return False
                next_check = now + CANCEL_CHECK_INTERVAL
            pending.append((Opcode.BINARY, chunk))
            ws.send_frames(pending)
            pending = []
        if pending:
            ws.send_frames(pending)
        return True

    def _router_cancelled(self, ws: ConnectorWebSocket) -> bool:
        """Between chunks: has the router sent anything (a 1001 close when the client left)?"""
        while True:
            if ws.sock is None:
                return True
            poller = select.poll()  # not select(): descriptors above 1,024 are common here
            poller.register(ws.sock, select.POLLIN | select.POLLPRI)
            if not poller.poll(0):
                return False
            opcode, _data = ws.recv_frame()
            if opcode == Opcode.CLOSE:
                return True

    def _close(self, ws: ConnectorWebSocket, code: int, reason: str) -> None:
        try:
            ws.close(code, reason, CLOSE_TIMEOUT)
        except WebSocketError as err:
            log.debug("close %d failed: %r", code, err)
