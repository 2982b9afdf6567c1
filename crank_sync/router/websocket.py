"""The router's end of a connector websocket, accepted with simple-websocket.

simple-websocket runs one reader thread per connection that also writes (pong and close
replies), and its ``send()`` neither locks nor loops over short writes. This subclass keeps its
public API (``send``, ``receive``, ``close``) and fixes what a proxy needs:

* every write goes through one lock and ``sendall`` (:class:`LockedSocket`), wsproto calls
  included, so frames from two threads never interleave;
* the reader loop runs on the thread that accepted the socket (:meth:`run_reader`), not on a
  thread of its own, and decodes frames with :mod:`crank_sync.router.frames`, not wsproto;
* the upgrade response carries the negotiated subprotocol and extra headers
  (``CrankerProtocol: 1.0``), and no compression extension;
* the reader stops reading once ``buffer_limit`` bytes wait to be consumed, so a slow client
  slows the connector down instead of growing the router's memory;
* it records whether a close frame really arrived (``close_received``) or the socket was lost;
* idle sockets are pinged; one unanswered ping closes the socket.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import simple_websocket
from simple_websocket.errors import ConnectionClosed
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import (
    CloseConnection,
    Ping,
    Pong,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError

from ..tlsio import recv_nowait
from .frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    ClientFrameDecoder,
    FrameError,
    encode_frame,
)

log = logging.getLogger(__name__)

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: How long we wait for the peer's close frame after sending ours.
CLOSE_TIMEOUT = 5.0
#: Bytes asked for per read. Kept under malloc's mmap threshold (128 KiB): a larger read
#: maps and unmaps its buffer on every call. No buffer is kept per socket between reads.
RECEIVE_BYTES = 64 * 1024
#: Bytes read at once while a bulk transfer arrives (the previous read brought at least
#: RECEIVE_BYTES): a quarter of the system calls. They go into one buffer kept for as long as
#: reads stay that big (a fresh 256 KiB buffer per read costs page faults); a socket of small
#: messages never has one.
BULK_RECEIVE_BYTES = 256 * 1024

__all__ = ["ConnectionClosed", "LockedSocket", "RouterWebSocket"]


class LockedSocket:
    """A socket whose ``send`` is a locked ``sendall``: safe to call from several threads.

    On TLS, a read also takes the lock and does not block (:mod:`crank_sync.tlsio`): the
    reader waits for bytes outside the lock (select), and a read that finds no whole TLS
    record returns None: wait and read again.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.lock = threading.RLock()

    def send(self, data: bytes) -> int:
        with self.lock:
            self._sock.sendall(data)
        return len(data)

    def recv(self, size: int) -> bytes | None:
        if not isinstance(self._sock, ssl.SSLSocket):
            return self._sock.recv(size)
        with self.lock:
            return recv_nowait(self._sock, size)

    def recv_into(self, buffer: memoryview) -> int:
        """Plain TCP only (the reader's bulk reads: a TLS read never brings that much)."""
        assert not isinstance(self._sock, ssl.SSLSocket)
        return self._sock.recv_into(buffer)

    def fileno(self) -> int:
        return self._sock.fileno()

    def pending(self) -> int:
        """Bytes already decrypted by TLS and waiting in its buffer (0 without TLS)."""
        pending = getattr(self._sock, "pending", None)
        return int(pending()) if pending is not None else 0

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _valid_close_code(code: int) -> bool:
    """RFC 6455 section 7.4: registered codes a peer may send, and 3000-4999."""
    if 3000 <= code <= 4999:
        return True
    return code in _SENDABLE_CLOSE_CODES


_SENDABLE_CLOSE_CODES = frozenset(
    {int(c) for c in CloseReason if 1000 <= c <= 2999 and c not in (1004, 1005, 1006, 1015)}
    | {1014}  # "bad gateway", registered after wsproto's list
)


class _NoThread:
    """Stands in for simple-websocket's reader thread, which is never started: the reader loop
    runs on the thread that accepted the connection (:meth:`RouterWebSocket.run_reader`), which
    would otherwise only wait for it. Saves a thread start per connector socket."""

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self) -> None:
        pass


class RouterWebSocket(simple_websocket.Server):  # type: ignore[misc]
    """A connector's websocket as the router holds it."""

    def __init__(
        self,
        environ: dict[str, Any],
        *,
        subprotocol: str | None,
        extra_headers: list[tuple[bytes, bytes]],
        ping_interval: float,
        max_message_size: int,
        buffer_limit: int,
        thread_name: str,
        on_closed: Callable[[RouterWebSocket], None] | None = None,
        on_message: Callable[[str | bytes], None] | None = None,
    ) -> None:
        self._chosen_subprotocol = subprotocol
        self._extra_headers = extra_headers
        self._buffer_limit = buffer_limit
        self._buffered = 0
        self._cond = threading.Condition()
        self._finished = False
        self._close_started: float | None = None
        self._on_closed = on_closed
        #: When set, messages go to this callback on the reader thread instead of the buffer.
        self._on_message = on_message
        #: A v1 response body goes straight to the client from the reader thread once the
        #: client's thread hands it over (:meth:`hand_over`): no thread hand-off per chunk.
        self._sink: Callable[[str | bytes], None] | None = None
        self._sink_flush: Callable[[], None] | None = None
        self._sink_lock = threading.Lock()
        #: What the sink raised (the client went away, the body overran its length).
        self.sink_error: BaseException | None = None
        #: When the sink last got a message (monotonic), for the idle timeout.
        self.last_delivery = 0.0
        #: True while the reader is inside the sink: a slow client, not an idle connector.
        self.sink_busy = False
        #: True once a close frame arrived from the connector (False: the socket was lost).
        self.close_received = False
        #: Set by the pool while a request uses this socket; pings are only sent when idle.
        self.in_use = False
        super().__init__(
            environ,
            receive_bytes=RECEIVE_BYTES,
            ping_interval=ping_interval,
            max_message_size=max_message_size,
            thread_class=lambda target: _NoThread(thread_name),
        )

    # -- handshake ---------------------------------------------------------------------------

    def handshake(self) -> None:
        """Answer the upgrade with our chosen subprotocol and extra headers, no extensions."""
        self.close_reason: int = CloseReason.ABNORMAL_CLOSURE
        self.input_buffer: collections.deque[str | bytes] = collections.deque()
        # The request head was parsed and checked by the registration handler: answer it here
        # and start wsproto past its handshake, instead of having h11 parse the head again.
        key = self.environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        if not key:
            self.connected = False
            return
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest())
        head = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + accept]
        if self._chosen_subprotocol:
            head.append(b"Sec-WebSocket-Protocol: " + self._chosen_subprotocol.encode())
        head.extend(name + b": " + value for name, value in self._extra_headers)
        self.ws = WsConnection(ConnectionType.SERVER)
        self._decoder = ClientFrameDecoder(self.max_message_size)
        self.sock.send(b"\r\n".join(head) + b"\r\n\r\n")
        self.subprotocol = self._chosen_subprotocol
        self.connected = True

    # -- writing -----------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send one message; raises ConnectionClosed once closing or closed."""
        with self.sock.lock:
            if not self.connected:
                raise ConnectionClosed(self.close_reason, self.close_message)
            if isinstance(data, (bytes, bytearray, memoryview)):
                self.sock.send(encode_frame(OP_BINARY, data))
            else:
                self.sock.send(encode_frame(OP_TEXT, data.encode()))

    def send_many(self, messages: list[bytes]) -> None:
        """Send binary messages with one write."""
        with self.sock.lock:
            if not self.connected:
                raise ConnectionClosed(self.close_reason, self.close_message)
            self.sock.send(b"".join([encode_frame(OP_BINARY, m) for m in messages]))

    def has_pending(self) -> bool:
        """A message is waiting to be received."""
        return bool(self.input_buffer)

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Start the close handshake; never raises. The reader thread waits for the reply."""
        with self.sock.lock:
            if not self.connected:
                return
            self.connected = False
            self._close_started = time.monotonic()
            try:
                out = self.ws.send(CloseConnection(reason or CloseReason.NORMAL_CLOSURE, message))
                self.sock.send(out)
            except (OSError, WsLocalProtocolError) as err:
                log.debug("close %s: %s", self.thread.name, err)
        with self._cond:
            self._cond.notify_all()

    def _send_raw(self, event: Any) -> None:
        """Send a control frame through wsproto (dropped once our close has gone out)."""
        with self.sock.lock:
            if self.connected:
                self.sock.send(self.ws.send(event))

    # -- reading -----------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message, or None after ``timeout``; ConnectionClosed once the socket ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.input_buffer or self._finished, timeout):
                return None
            if self.input_buffer:
                msg = self.input_buffer.popleft()
                self._buffered -= len(msg)
                self._cond.notify_all()
                return msg
        raise ConnectionClosed(self.close_reason, self.close_message)

    def run_reader(self) -> None:
        """Read this socket until it closes, on the calling thread."""
        self._thread()

    @property
    def finished(self) -> bool:
        """True once the reader thread has ended and the socket is closed."""
        return self._finished

    def _deliver(self, msg: str | bytes) -> None:
        if self._on_message is not None:
            if self.connected:
                self._on_message(msg)
            return
        with self._cond:
            if self._sink is None:
                if self.connected:  # after we started closing, data is of no use to anyone
                    self.input_buffer.append(msg)
                    self._buffered += len(msg)
                    self._cond.notify_all()
                return
        self._to_sink(msg)

    # -- handing a response body to the reader thread ------------------------------------------

    def hand_over(self, sink: Callable[[str | bytes], None], flush: Callable[[], None]) -> None:
        """From now on the reader thread passes each message to ``sink`` (and calls ``flush``
        when it has no more at hand) instead of queueing it for :meth:`receive`. Messages
        already queued go to ``sink`` first, here, in order. ``sink`` must not block for
        longer than a socket timeout; what it raises ends up in :attr:`sink_error`."""
        with self._cond:
            while self.input_buffer:
                msg = self.input_buffer.popleft()
                self._buffered -= len(msg)
                sink(msg)
            flush()
            self.last_delivery = time.monotonic()
            self._sink, self._sink_flush = sink, flush
            self._cond.notify_all()  # the reader may be waiting for room

    def detach(self) -> None:
        """Stop passing messages to the sink; returns once the reader is not inside it."""
        with self._sink_lock:
            self._sink = self._sink_flush = None

    def wait_done(self, timeout: float) -> bool:
        """Wait until the socket has finished or the sink failed; False after ``timeout``."""
        with self._cond:
            return bool(self._cond.wait_for(
                lambda: self._finished or self.sink_error is not None, timeout))

    def _to_sink(self, msg: str | bytes | None) -> None:
        """Pass ``msg`` to the sink; with None, flush it."""
        with self._sink_lock:
            sink, flush = self._sink, self._sink_flush
            if sink is None or flush is None or self.sink_error is not None:
                return
            self.sink_busy = True
            try:
                if msg is None:
                    flush()
                else:
                    sink(msg)
            except Exception as err:  # noqa: BLE001 - handed to the client's thread
                self._sink_failed(err)
            finally:
                self.sink_busy = False
                self.last_delivery = time.monotonic()

    def _sink_failed(self, err: BaseException) -> None:
        with self._cond:
            self.sink_error = err
            self._cond.notify_all()

    def _wait_for_room(self) -> None:
        with self._cond:
            while self.connected and self._buffered > self._buffer_limit:
                self._cond.wait(1.0)

    def _handle_messages(self) -> bool:
        """Act on every complete message and control frame; False once the socket is done."""
        try:
            for opcode, payload in self._decoder.messages():
                if opcode == OP_BINARY:
                    self._deliver(payload)
                elif opcode == OP_TEXT:
                    try:
                        self._deliver(payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise FrameError(1007, "text message is not UTF-8") from None
                elif opcode == OP_CLOSE:
                    self._close_received(payload)
                    return False
                elif opcode == OP_PING:
                    self._send_raw(Pong(payload))
                else:
                    self.pong_received = True
        except FrameError as err:
            log.warning("%s: %s; closing with %d", self.thread.name, err.reason, err.code)
            self.close(err.code, err.reason)
            return False
        return True

    def _close_received(self, payload: bytes) -> None:
        """Answer the connector's close frame (FrameError if the frame itself is invalid)."""
        code: int
        if len(payload) == 1:
            raise FrameError(CloseReason.PROTOCOL_ERROR, "close frame with a 1-byte payload")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not _valid_close_code(code):
                raise FrameError(CloseReason.PROTOCOL_ERROR, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError(CloseReason.INVALID_FRAME_PAYLOAD_DATA,
                                 "close reason is not UTF-8") from None
        else:
            code, reason = CloseReason.NO_STATUS_RCVD, ""
        self.close_received = True
        self.close_reason = code
        self.close_message = reason
        with self.sock.lock:
            if self.connected:  # the connector started the close: answer it
                self.connected = False
                try:
                    self.sock.send(self.ws.send(CloseConnection(code)))
                except (OSError, WsLocalProtocolError):
                    pass

    def _thread(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.sock, selectors.EVENT_READ)
            next_ping = time.monotonic() + self.ping_interval
            bulk: memoryview | None = None  # the bulk read buffer, while reads are big
            while True:
                now = time.monotonic()
                if self._close_started is not None:
                    timeout = self._close_started + CLOSE_TIMEOUT - now
                    if timeout <= 0:
                        break
                elif now >= next_ping:
                    if not self._ping_or_give_up():
                        continue
                    next_ping = now + self.ping_interval
                    continue
                else:
                    timeout = next_ping - now
                if not self.sock.pending() and not sel.select(timeout):
                    continue
                data: bytes | memoryview | None
                if bulk is None:
                    data = self.sock.recv(self.receive_bytes)
                    if data is None:
                        continue  # part of a TLS record: wait for the rest
                else:
                    data = bulk[:self.sock.recv_into(bulk)]
                if not data:
                    break
                if len(data) < self.receive_bytes:
                    bulk = None
                elif bulk is None:
                    bulk = memoryview(bytearray(BULK_RECEIVE_BYTES))
                self._decoder.feed(data)
                if not self._handle_messages():
                    break
                if self._sink_flush is not None:
                    self._to_sink(None)  # no more at hand: what the sink holds goes out
                self._wait_for_room()
        except (OSError, WsLocalProtocolError) as err:
            log.debug("%s ended: %r", self.thread.name, err)
        finally:
            self.connected = False
            sel.close()
            self.sock.close()
            with self._cond:
                self._finished = True
                self._cond.notify_all()
            if self._on_closed is not None:
                try:
                    self._on_closed(self)
                except Exception:  # noqa: BLE001 - a callback must not kill the reader
                    log.exception("on_closed callback failed")

    def _ping_or_give_up(self) -> bool:
        """Ping an idle socket; close it when the previous ping got no pong. False if closed."""
        if self.in_use:
            self.pong_received = True  # busy sockets are judged by the request's idle timeout
            return True
        if not self.pong_received:
            log.info("%s: no pong within %.1fs, closing", self.thread.name, self.ping_interval)
            self.close(CloseReason.GOING_AWAY, "ping timeout")
            return False
        self.pong_received = False
        self._send_raw(Ping())
        return True
