"""The router's side of websockets through the tunnel (docs/websocket-tunnel.rst).

A client's websocket upgrade goes to a connector that tunnels them, as a request whose body
never ends. When the service answers 101, the router writes that head to the client and from
then on relays bytes, not websocket frames: the client's thread carries the connector's bytes
to the client, and a second thread (``crank-router-ws-up-N``) the client's bytes to the
connector. Each direction waits for the other end to take what it sent (the v3 window, the v1
socket's TCP window), so a slow reader slows the writer and memory stays bounded.
:class:`~crank_sync.protocol.tunnel.FrameBoundaries` finds the frame boundaries, where a
connection idle for ``websocket_idle_timeout`` gets a close frame 1001 at both ends.

An answer other than 101 (a 403, say) is relayed as any response is.
"""
from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import (
    BadGateway,
    ClientGone,
    ConnectorProtocolError,
    CrankError,
    GatewayTimeout,
)
from ..protocol import parse_response_head, tunnel, v3
from ..protocol import v3_session as core
from ..protocol.headers import filter_response_headers
from ..protocol.limits import V3_OVERHEAD, pieces
from ..ws.tls import held_bytes, recv_locked
from . import v1, v3_relay
from .exchange import Exchange
from .pool import ConnectorSocket
from .response import CLIENT_CHECK_INTERVAL
from .v3 import RouterStream, _Closed, reset_stream
from .websocket import ConnectionClosed

log = logging.getLogger(__name__)

_pipe_ids = itertools.count(1)
#: How much of the client's bytes one read takes.
_READ_SIZE = 64 * 1024
#: How long the up thread may take to finish once the exchange is over.
_JOIN_TIMEOUT = 5.0


def wanted(ex: Exchange) -> bool:
    """Is this request a websocket upgrade the tunnel should carry?"""
    return ex.method == "GET" and ex.version == "HTTP/1.1" and \
        tunnel.is_websocket_upgrade(ex.headers.items())


def relay(ex: Exchange, sock: ConnectorSocket, stream: RouterStream | None) -> None:
    """The upgrade's head went to ``sock``: relay the answer, and the connection after a 101."""
    if stream is None:
        _V1Tunnel(ex, sock).run()
    else:
        _V3Tunnel(ex, sock, stream).run()


class _Pipe:
    """The client's side of one upgraded connection: writes to the client (the client's
    thread), reads from it (the up thread), the frame boundaries and the counts."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.sock: socket.socket = ex.connection
        self.lock = threading.RLock()  # OpenSSL: never a read beside a write (ws/tls.py)
        self.down = tunnel.FrameBoundaries()  # service -> client
        self.up = tunnel.FrameBoundaries()  # client -> service
        self.last_activity = time.monotonic()
        self.done = threading.Event()
        #: Held while a chunk of the client's goes up whole: ``up`` is at a boundary between.
        self.up_lock = threading.Lock()
        self.client_closed = False
        #: How a close frame goes up (set when the relay starts).
        self.send_up: Callable[[bytes], None] | None = None
        self.opened = time.monotonic()
        self.id = next(_pipe_ids)

    def switch(self, text: str) -> None:
        """Write the service's 101 to the client."""
        head = parse_response_head(text)
        headers = tunnel.upgrade_headers(filter_response_headers(
            head.headers, keep_server=self.ex.config.proxy_server_header))
        _, headers = self.ex.target_headers_received(101, headers)  # a 101 stays a 101
        status = 101
        lines = [f"HTTP/1.1 101 {head.reason.strip() or 'Switching Protocols'}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        self.ex.response_head_written(status)
        self.ex.close_connection = True  # the connection is the websocket's from now on
        self._write(("".join(lines) + "\r\n").encode("latin-1"))
        self.ex.core.metrics.websocket_opened(self.ex.route)
        self.ex.core.websockets.add(self)

    def to_client(self, data: bytes) -> None:
        if data:
            with self.lock:  # a close frame from another thread goes in between, never inside
                self.down.feed(data)
                self._write(data)
            self.ex.writer.bytes_written += len(data)
            self.ex.response_body_chunk(data)
            self.last_activity = time.monotonic()

    def _write(self, data: bytes) -> None:
        try:
            with self.lock:
                self.sock.sendall(data)
        except OSError as err:
            raise ClientGone(f"writing to the websocket client: {err!r}") from err

    def pump_up(self, send: Callable[[bytes], None], end: Callable[[], None],
                data: bytes) -> None:
        """The up thread: ``data`` (what the client sent with its head), then the client's
        bytes, to ``send`` until the client closes, then ``end()``."""
        try:
            while not self.done.is_set():
                if data:
                    self.ex.request_body_chunk(data)
                    with self.up_lock:
                        self.up.feed(data)
                        send(data)
                    self.last_activity = time.monotonic()
                try:
                    data = recv_locked(self.sock, _READ_SIZE, self.lock)
                except TimeoutError:
                    data = b""
                    continue
                if not data:
                    self.client_closed = True
                    end()
                    return
        except (OSError, ConnectionClosed, CrankError) as err:
            if not self.done.is_set():
                log.debug("websocket %d: client side ended: %r", self.id, err)
                self.client_closed = True
                try:
                    end()
                except (OSError, ConnectionClosed, CrankError):
                    pass
        finally:
            self.done.set()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_activity

    def going_away(self) -> None:
        """The router stops: a close frame 1001 at both ends, and the relay ends (any
        thread)."""
        if self.send_up is not None:
            self.close_idle(self.send_up, "router stopping")
        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close_idle(self, send_up: Callable[[bytes], None], reason: str = "idle timeout") -> None:
        """A close frame 1001 to each end that is between frames (not to the service while a
        chunk of the client's is on its way up). The service's goes first: the client
        answers its own at once, and that answer must not overtake it."""
        if self.up_lock.acquire(blocking=False):
            try:
                if self.up.at_boundary:
                    send_up(tunnel.close_frame(1001, reason, masked=True))
            except (OSError, ConnectionClosed, CrankError):
                pass
            finally:
                self.up_lock.release()
        with self.lock:
            if self.down.at_boundary:
                try:
                    self._write(tunnel.close_frame(1001, reason, masked=False))
                    self.down.closed = True
                except ClientGone:
                    pass

    def finish(self) -> None:
        """The exchange is over: the client's socket is shut down (its reader ends)."""
        self.done.set()
        self.ex.core.websockets.discard(self)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ex.core.metrics.websocket_closed(self.ex.route, time.monotonic() - self.opened)


def _start_up(pipe: _Pipe, send: Callable[[bytes], None], end: Callable[[], None],
              closer: Callable[[bytes], None] | None = None) -> threading.Thread:
    """The up thread; ``closer`` sends a close frame up from another thread (``send``)."""
    pipe.send_up = closer or send
    # a client must wait for the 101, but may not: what the handler's reader holds goes
    # first, taken before the client's socket has a second user
    held = held_bytes(pipe.ex.rfile, pipe.sock)
    thread = threading.Thread(target=pipe.pump_up, args=(send, end, held),
                              name=f"crank-router-ws-up-{pipe.id}", daemon=True)
    thread.start()
    return thread


def _check_waiting(ex: Exchange, since: float) -> None:
    if ex.client_gone():
        raise ClientGone("client disconnected while waiting for the connector")
    if time.monotonic() - since >= ex.config.idle_timeout:
        raise GatewayTimeout(f"no answer to the upgrade in {ex.config.idle_timeout:.0f}s")


def _status_of(text: str) -> int:
    try:
        return parse_response_head(text).status
    except Exception as err:  # noqa: BLE001 - any bad head is the connector's fault
        raise ConnectorProtocolError(f"bad response head from connector: {err}") from err


class _V1Tunnel:
    """A v1 socket carries one upgraded connection: binary messages both ways, then a close."""

    def __init__(self, ex: Exchange, sock: ConnectorSocket) -> None:
        self.ex, self.sock, self.ws = ex, sock, sock.ws

    def run(self) -> None:
        ex, ws = self.ex, self.ws
        finished = False
        try:
            text = self._head()
            if _status_of(text) != 101:
                finished = v1.relay_response(ex, self.sock, text)
                return
            pipe = _Pipe(ex)
            pipe.switch(text)
            finished = self._relay(pipe)
        finally:
            if not finished:
                ws.close(1001, "websocket ended")
            ex.core.registry.remove(self.sock)

    def _head(self) -> str:
        since = time.monotonic()
        while True:
            try:
                msg = self.ws.receive(timeout=CLIENT_CHECK_INTERVAL)
            except ConnectionClosed as err:
                raise BadGateway(f"connector closed with {err} before answering the upgrade") \
                    from err
            if isinstance(msg, str):
                return msg
            if msg is not None:
                raise ConnectorProtocolError("connector sent bytes before its answer")
            _check_waiting(self.ex, since)

    def _send(self, data: bytes) -> None:
        for piece in pieces(data, self.sock.message_limit):
            self.ws.send(piece)

    def _relay(self, pipe: _Pipe) -> bool:
        ws, idle = self.ws, self.ex.config.websocket_idle_timeout
        up = _start_up(pipe, self._send, lambda: ws.close(1000, "client closed"))
        try:
            while True:
                try:
                    msg = ws.receive(timeout=CLIENT_CHECK_INTERVAL)
                except ConnectionClosed:
                    return True  # the service's side ended: so does the client's
                if isinstance(msg, bytes):
                    pipe.to_client(msg)
                elif pipe.done.is_set():
                    return pipe.client_closed
                elif msg is None and idle and pipe.idle_for() >= idle:
                    pipe.close_idle(self._send)
                    self.ex.abort_kind = "idle_timeout"
                    return False
        finally:
            pipe.finish()
            up.join(_JOIN_TIMEOUT)


class _V3Tunnel:
    """A v3 stream carries one upgraded connection: DATA both ways under the windows."""

    def __init__(self, ex: Exchange, sock: ConnectorSocket, stream: RouterStream) -> None:
        self.ex, self.sock, self.stream = ex, sock, stream
        self.size = sock.message_limit - V3_OVERHEAD
        self.acks: list[int] = []
        self.ended = threading.Event()
        self.end_lock = threading.Lock()
        self.end_sent = False

    def run(self) -> None:
        stream = self.stream
        completed = False
        try:
            event = self._first()
            if not isinstance(event, core.HeadReceived) or _status_of(event.text) != 101:
                v3_relay.relay_from(self.ex, stream, event)
                completed = True
                return
            stream.session.ack(stream.id, list(event.frame_sizes))
            pipe = _Pipe(self.ex)
            pipe.switch(event.text)
            completed = self._relay(pipe)
        except (ConnectionClosed, OSError) as err:
            raise BadGateway(f"connector socket failed: {err!r}") from err
        finally:
            if not completed:
                reset_stream(stream, v3.RST_CLIENT_GONE, "websocket ended")
            stream.session.end_stream(stream)

    def _first(self) -> Any:
        since = time.monotonic()
        while True:
            event = self.stream.get(CLIENT_CHECK_INTERVAL)
            if event is not None:
                return event
            _check_waiting(self.ex, since)

    def _send(self, data: bytes) -> None:
        stream = self.stream
        for piece in pieces(data, self.size):
            while not stream.wait_window(CLIENT_CHECK_INTERVAL):
                if self.ended.is_set():
                    raise ConnectionClosed(1001, "the websocket ended")
            if stream.ended:
                raise ConnectionClosed(1001, "the connector's side ended")
            stream.send(v3.data_frame(stream.id, piece), len(piece))

    def _send_now(self, data: bytes) -> None:
        """A close frame and END_STREAM, past the window (a few bytes: the idle close)."""
        stream = self.stream
        stream.send(v3.data_frame(stream.id, data), len(data))
        self._end()

    def _end(self) -> None:
        """END_STREAM, once (the client's end and the idle close may both ask for it)."""
        with self.end_lock:
            if self.end_sent:
                return
            self.end_sent = True
        self.stream.send(v3.data_frame(self.stream.id, b"", end_stream=True), 0)

    def _relay(self, pipe: _Pipe) -> bool:
        stream, idle = self.stream, self.ex.config.websocket_idle_timeout
        up = _start_up(pipe, self._send, self._end, self._send_now)
        try:
            while True:
                event = stream.get(CLIENT_CHECK_INTERVAL)
                if event is None:
                    self._ack()
                    if pipe.done.is_set():
                        return pipe.client_closed
                    if idle and pipe.idle_for() >= idle:
                        self.ended.set()  # the up thread stops waiting for the window
                        pipe.close_idle(self._send_now)  # then ends the stream cleanly
                        self.ex.abort_kind = "idle_timeout"
                        return True
                    continue
                if type(event) is core.DataReceived:
                    pipe.to_client(event.data)
                    if event.data:
                        self.acks.append(len(event.data))
                    if not stream.has_events():
                        self._ack()
                    if event.end_stream:
                        return True
                elif isinstance(event, (core.StreamReset, _Closed, core.StreamError)):
                    log.info("websocket %d: the connector's side ended: %s", pipe.id, event)
                    return False
        finally:
            self.ended.set()
            self._ack()
            pipe.finish()
            up.join(_JOIN_TIMEOUT)

    def _ack(self) -> None:
        if self.acks:
            acks, self.acks = self.acks, []
            try:
                self.stream.session.ack(self.stream.id, acks)
            except (ConnectionClosed, OSError) as err:
                log.debug("websocket stream %d: WINDOW_UPDATE not sent: %r", self.stream.id,
                          err)
