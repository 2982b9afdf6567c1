"""The server end of a websocket as a blocking object, read on the thread that accepted it.

simple-websocket runs a reader thread of its own per connection, and its ``send`` neither
locks nor loops over short writes; this class reads on the accepting thread and locks every
write. What it does:

* every write goes through one lock and ``sendall`` (:class:`~.tls.LockedSocket`), so frames
  from two threads never interleave; on TLS the reader reads under that lock too;
* the reader loop (:meth:`run_reader`) decodes frames with :class:`~.frames.FrameDecoder`
  (server role: every frame masked) and answers pings and the close handshake itself;
* it stops reading once ``buffer_limit`` bytes wait to be consumed, so a slow consumer slows
  the peer down instead of growing memory;
* it records whether a close frame really arrived (``close_received``) or the socket was lost;
* idle sockets are pinged; one unanswered ping closes the socket (:func:`~.ping.silent_too_long`
  counted from the last ping that was answered).
"""
from __future__ import annotations

import collections
import logging
import selectors
import threading
import time
from collections.abc import Callable

from ..errors import ConnectionClosed, FrameError
from .frames import FrameDecoder, Opcode, Role, encode_frame
from .ping import silent_too_long
from .tls import LockedSocket

log = logging.getLogger(__name__)

__all__ = ["CLOSE_TIMEOUT", "ConnectionClosed", "ServerConnection"]

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

NORMAL_CLOSURE, GOING_AWAY, PROTOCOL_ERROR = 1000, 1001, 1002
NO_STATUS_RCVD, ABNORMAL_CLOSURE, INVALID_PAYLOAD = 1005, 1006, 1007
#: Close codes a peer may send (RFC 6455 section 7.4, and 1014 "bad gateway"), besides
#: 3000-4999.
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                   1012, 1013, 1014})


def _valid_close_code(code: int) -> bool:
    return 3000 <= code <= 4999 or code in _SENDABLE_CLOSE_CODES


def close_payload(code: int | None, reason: str | None = None) -> bytes:
    """A close frame's payload: the code and the reason cut to fit 125 bytes (whole UTF-8
    characters); empty for "no status"."""
    if code is None or code == NO_STATUS_RCVD:
        return b""
    text = (reason or "").encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + text


def parse_close(payload: bytes) -> tuple[int, str]:
    """Code and reason of a peer's close frame; FrameError when the frame is invalid."""
    if not payload:
        return NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_PAYLOAD, "close reason is not UTF-8") from None


class ServerConnection:
    """An accepted websocket (the handshake already answered) on ``sock``."""

    #: Where this connection logs (a subclass names its own module).
    log = log

    def __init__(
        self,
        sock: LockedSocket,
        *,
        name: str,
        ping_interval: float,
        max_message_size: int,
        buffer_limit: int,
        subprotocol: str | None = None,
        on_closed: Callable[[ServerConnection], None] | None = None,
        on_message: Callable[[str | bytes], None] | None = None,
    ) -> None:
        self.sock = sock
        self.name = name
        self.ping_interval = ping_interval
        self.max_message_size = max_message_size
        self.subprotocol = subprotocol
        self.connected = True
        self.close_reason = ABNORMAL_CLOSURE
        self.close_message: str | None = None
        #: True once a close frame arrived from the peer (False: the socket was lost).
        self.close_received = False
        #: Set while a request uses this socket; pings are only sent when idle.
        self.in_use = False
        self.input_buffer: collections.deque[str | bytes] = collections.deque()
        self._buffer_limit = buffer_limit
        self._buffered = 0
        self._cond = threading.Condition()
        self._finished = False
        self._close_started: float | None = None
        self._on_closed = on_closed
        #: When set, messages go to this callback on the reader thread instead of the buffer.
        self._on_message = on_message
        self._decoder = FrameDecoder(Role.SERVER, max_message_size)
        self._bulk: memoryview | None = None  # the bulk read buffer, while reads are big
        self._next_ping = 0.0
        self._ping_sent = self._heard = time.monotonic()

    # -- writing -----------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send one message; raises ConnectionClosed once closing or closed."""
        with self.sock.lock:
            if not self.connected:
                raise ConnectionClosed(self.close_reason, self.close_message)
            if isinstance(data, (bytes, bytearray, memoryview)):
                self.sock.send(encode_frame(Opcode.BINARY, data))
            else:
                self.sock.send(encode_frame(Opcode.TEXT, data.encode()))

    def send_many(self, messages: list[bytes]) -> None:
        """Send binary messages with one write."""
        with self.sock.lock:
            if not self.connected:
                raise ConnectionClosed(self.close_reason, self.close_message)
            self.sock.send(b"".join([encode_frame(Opcode.BINARY, m) for m in messages]))

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Start the close handshake; never raises. The reader thread waits for the reply."""
        with self.sock.lock:
            if not self.connected:
                return
            self.connected = False
            self._close_started = time.monotonic()
            try:
                self.sock.send(encode_frame(
                    Opcode.CLOSE, close_payload(reason or NORMAL_CLOSURE, message)))
            except OSError as err:
                self.log.debug("close %s: %s", self.name, err)
        with self._cond:
            self._cond.notify_all()

    def _send_control(self, opcode: Opcode, payload: bytes = b"") -> None:
        """Send a ping or pong (dropped once our close has gone out)."""
        with self.sock.lock:
            if self.connected:
                self.sock.send(encode_frame(opcode, payload))

    # -- reading -----------------------------------------------------------------------------

    def has_pending(self) -> bool:
        """A message is waiting to be received."""
        return bool(self.input_buffer)

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

    @property
    def finished(self) -> bool:
        """True once the reader loop has ended and the socket is closed."""
        return self._finished

    def _deliver(self, msg: str | bytes) -> None:
        """A whole message arrived: to the callback, or queued for :meth:`receive`."""
        if self._on_message is not None:
            if self.connected:
                self._on_message(msg)
            return
        with self._cond:
            if self.connected:  # after we started closing, data is of no use to anyone
                self.input_buffer.append(msg)
                self._buffered += len(msg)
                self._cond.notify_all()

    def _after_read(self) -> None:
        """Called when the messages of one read are delivered (no more at hand)."""

    def _wait_for_room(self) -> None:
        with self._cond:
            while self.connected and self._buffered > self._buffer_limit:
                self._cond.wait(1.0)

    def _on_frame(self, opcode: int, payload: bytes) -> bool:
        """Act on one message or control frame; False once the socket is done."""
        if opcode == Opcode.BINARY:
            self._deliver(payload)
        elif opcode == Opcode.TEXT:
            try:
                self._deliver(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise FrameError(INVALID_PAYLOAD, "text message is not UTF-8") from None
        elif opcode == Opcode.CLOSE:
            self._close_received(payload)
            return False
        elif opcode == Opcode.PING:
            self._send_control(Opcode.PONG, payload)
        else:  # a pong: the ping sent last was answered
            self._heard = self._ping_sent
        return True

    def _handle_messages(self) -> bool:
        """Act on every complete message and control frame; False once the socket is done."""
        try:
            for opcode, payload in self._decoder.messages():
                if not self._on_frame(opcode, payload):
                    return False
        except FrameError as err:
            self.log.warning("%s: %s; closing with %d", self.name, err.reason, err.code)
            self.close(err.code, err.reason)
            return False
        return True

    def _close_received(self, payload: bytes) -> None:
        """Answer the peer's close frame (FrameError if the frame itself is invalid)."""
        code, reason = parse_close(payload)
        self.close_received = True
        self.close_reason = code
        self.close_message = reason
        with self.sock.lock:
            if self.connected:  # the peer started the close: answer it
                self.connected = False
                try:
                    self.sock.send(encode_frame(Opcode.CLOSE, close_payload(code)))
                except OSError:
                    pass

    def run_reader(self) -> None:
        """Read this socket until it closes, on the calling thread."""
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.sock, selectors.EVENT_READ)  # type: ignore[arg-type]
            self._next_ping = time.monotonic() + self.ping_interval
            while self._read_once(sel):
                pass
        except OSError as err:
            self.log.debug("%s ended: %r", self.name, err)
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
                    self.log.exception("on_closed callback failed")

    def _read_once(self, sel: selectors.BaseSelector) -> bool:
        """Wait for bytes (pinging when due) and act on them; False once the socket is done."""
        timeout = self._timeout()
        if timeout is None:
            return False
        if not self.sock.pending() and not sel.select(timeout):
            return True
        data = self._read()
        if data is None:
            return True  # part of a TLS record: wait for the rest
        if not data:
            return False
        self._decoder.feed(data)
        if not self._handle_messages():
            return False
        self._after_read()
        self._wait_for_room()
        return True

    def _timeout(self) -> float | None:
        """Seconds to wait for bytes: until the next ping, or the end of the wait for the
        peer's close; None once that wait is over."""
        now = time.monotonic()
        if self._close_started is not None:
            left = self._close_started + CLOSE_TIMEOUT - now
            return left if left > 0 else None
        if now < self._next_ping:
            return self._next_ping - now
        if not self._ping_or_give_up(now):
            return CLOSE_TIMEOUT if self._close_started is not None else None
        self._next_ping = now + self.ping_interval
        return self.ping_interval

    def _read(self) -> bytes | memoryview | None:
        """One read: bytes, ``b""`` at EOF, None for part of a TLS record."""
        bulk = self._bulk
        data: bytes | memoryview | None
        if bulk is None:
            data = self.sock.recv(RECEIVE_BYTES)
            if data is None:
                return None
        else:
            data = bulk[:self.sock.recv_into(bulk)]
        if len(data) < RECEIVE_BYTES:
            self._bulk = None
        elif bulk is None:
            self._bulk = memoryview(bytearray(BULK_RECEIVE_BYTES))
        return data

    def _ping_or_give_up(self, now: float) -> bool:
        """Ping an idle socket; close it when the previous ping got no pong. False if closed."""
        if self.in_use:
            self._heard = now  # busy sockets are judged by the request's idle timeout
            return True
        if silent_too_long(self._heard, self.ping_interval, now):
            self.log.info("%s: no pong within %.1fs, closing", self.name, self.ping_interval)
            self.close(GOING_AWAY, "ping timeout")
            return False
        self._ping_sent = now
        self._send_control(Opcode.PING)
        return True
