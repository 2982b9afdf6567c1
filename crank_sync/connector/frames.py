"""Websocket frames on the connector's side, with few system calls.

websocket-client reads a frame with two or three ``recv`` calls (header, extended length,
payload) and draws every mask key from ``os.urandom``. Under load each call is a GIL hand-off.
A v3 socket has one reader thread that owns the receiving side, so :class:`FrameReader` reads
what has arrived in one call and decodes every frame in it with the client-role
:class:`~crank_sync.ws.frames.FrameDecoder`. A v1 socket reads its request body the same way,
then hands the socket back (:meth:`FrameReader.finish`).
"""
from __future__ import annotations

import functools
import time

from ..errors import ConnectionLost, WebSocketError
from ..ws.frames import FrameDecoder, Opcode, Role, mask_keys
from ..ws.frames import encode_frame as _encode_frame
from ..ws.tls import recv_locked
from .websocket import ConnectorWebSocket, translated

__all__ = ["MAX_MESSAGE", "FrameReader", "body_complete", "encode_frame", "mask_keys",
           "small_body"]

#: Bytes asked for per read; under malloc's mmap threshold (128 KiB), above which every read
#: would map and unmap its buffer.
RECV_BYTES = 64 * 1024
#: A message longer than this closes the socket with 1009.
MAX_MESSAGE = 64 * 1024 * 1024

#: One final, masked client frame (what ``ABNF.create_frame(...).format()`` gives).
encode_frame = functools.partial(_encode_frame, masked=True)


def small_body(resp: object, limit: int) -> bool:
    """True for a fixed-length body of at most ``limit`` bytes: worth waiting for, so the
    head and the body leave together. Anything else, the head leaves at once."""
    remaining = getattr(resp, "length_remaining", None)
    return remaining is not None and remaining <= limit


def body_complete(resp: object) -> bool:
    """True when the target's response is known to have no more body bytes to read."""
    return getattr(resp, "length_remaining", None) == 0


class FrameReader:
    """Reads complete messages from the router's side of ``ws`` (unmasked server frames).

    Pings are answered, pongs dropped, and a close frame is answered and returned. The socket's
    timeout applies to each read; a timeout raises :class:`~crank_sync.errors.ReadTimeout`, a
    frame against the protocol :class:`~crank_sync.errors.FrameError`, a socket that ended or
    failed :class:`~crank_sync.errors.ConnectionLost`.
    """

    def __init__(self, ws: ConnectorWebSocket, max_message: int | None = None) -> None:
        self.ws = ws
        self._decoder = FrameDecoder(Role.CLIENT, max_message or MAX_MESSAGE)
        #: When the router was last heard from (monotonic): any bytes, a pong's included.
        self.last_heard = time.monotonic()

    @property
    def buffered(self) -> int:
        """Bytes read but not yet returned as part of a message."""
        return self._decoder.buffered

    def recv(self) -> tuple[int, bytes]:
        """The next ``(opcode, payload)``: a whole text or binary message, or a close frame."""
        while True:
            message = self._decoder.next()
            if message is None:
                self._fill()
            elif self._control(*message):
                return message

    def _control(self, opcode: int, payload: bytes) -> bool:
        """Act on a control frame; True for what :meth:`recv` returns (data, close)."""
        if opcode == Opcode.PING:
            self.ws.pong(payload)
            return False
        if opcode == Opcode.PONG:
            return False
        if opcode == Opcode.CLOSE:
            self._answer_close()
        return True

    def finish(self) -> list[tuple[int, bytes]]:
        """Hand the socket back: what arrived after the last message returned, as whole
        messages (and a close, answered), reading the socket only for the rest of one already
        begun and never beyond it, so that nothing is left in this reader's buffer. Pings
        among them are answered."""
        rest: list[tuple[int, bytes]] = []
        decoder = self._decoder
        while decoder.buffered or decoder.in_message:
            message = decoder.next()
            if message is None:
                self._fill(decoder.missing())
            elif self._control(*message):
                rest.append(message)
        return rest

    def fill(self, limit: int = RECV_BYTES) -> None:
        """Read once (at most ``limit`` bytes) into the decoder."""
        self._fill(limit)

    def _fill(self, limit: int = RECV_BYTES) -> None:
        sock = self.ws.sock
        if sock is None:
            raise ConnectionLost("socket is already closed")
        try:
            data = recv_locked(sock, limit, self.ws.lock)
        except OSError as err:  # a timeout (socket.timeout, SSL read timeouts) is ReadTimeout
            raise translated(err, reading=True) from err
        if not data:
            raise ConnectionLost("router closed the connection")
        self.last_heard = time.monotonic()
        self._decoder.feed(data)

    def _answer_close(self) -> None:
        try:
            self.ws.send_close()
        except WebSocketError:
            pass
