"""Websocket frames on the router's side: decoding what connectors send, encoding replies.

wsproto (under simple-websocket) decodes a frame in several generator steps, copies the payload
three times and unmasks it with a byte loop; on a bulk transfer that was over half the router's
CPU time. :class:`ClientFrameDecoder` parses frames straight out of one receive buffer and
unmasks each payload with one call of :func:`crank_sync.masking.xor_mask`; :func:`encode_frame`
builds the router's (unmasked) frames with one ``struct.pack``. The close handshake, pings and
pongs still go through wsproto's connection state machine.

RFC 6455 checks applied to every frame, each failing with the close code shown:
reserved bits or an unknown opcode (1002), an unmasked frame (1002), a control frame that is
fragmented or over 125 bytes (1002), a continuation with no message to continue, or a new
message inside a fragmented one (1002), a frame or message over ``max_message_size`` (1009).
"""
from __future__ import annotations

from collections.abc import Iterator

from ..masking import xor_mask
from ..wsframe import encode_head, parse_head

__all__ = ["OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG", "OP_TEXT", "ClientFrameDecoder",
           "FrameError", "encode_frame"]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA = (OP_CONT, OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)


class FrameError(Exception):
    """The connector broke the websocket protocol: close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode_frame(opcode: int, payload: bytes | bytearray | memoryview) -> bytes:
    """One final, unmasked server frame."""
    head = encode_head(opcode, len(payload), False)
    return head + payload if isinstance(payload, bytes) else head + bytes(payload)


class ClientFrameDecoder:
    """Masked client frames in, whole messages and control frames out."""

    def __init__(self, max_message_size: int | None) -> None:
        self.max_message_size = max_message_size or (1 << 62)
        self._buf = bytearray()
        self._pos = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._opcode = 0  # opcode of the fragmented message in progress, 0 when none

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos:
            if self._pos == len(self._buf):
                self._buf.clear()
            else:
                del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf) - self._pos

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """``(opcode, payload)`` of each whole message and control frame now complete."""
        while True:
            frame = self._next_frame()
            if frame is None:
                return
            fin, opcode, payload = frame
            if opcode in _CONTROL:
                yield opcode, payload
                continue
            if opcode == OP_CONT:
                if not self._opcode:
                    raise FrameError(1002, "continuation frame with no message to continue")
                self._add(payload)
                if fin:
                    opcode, self._opcode = self._opcode, 0
                    payload = b"".join(self._parts)
                    self._parts = []
                    self._size = 0
                    yield opcode, payload
                continue
            if self._opcode:
                raise FrameError(1002, "new message inside a fragmented message")
            if fin:
                yield opcode, payload
            else:
                self._opcode = opcode
                self._add(payload)

    def _add(self, payload: bytes) -> None:
        self._size += len(payload)
        if self._size > self.max_message_size:
            raise FrameError(1009, f"message over {self.max_message_size} bytes")
        self._parts.append(payload)

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        head = parse_head(buf, self._pos)
        if head is None:
            return None
        if head.rsv:
            raise FrameError(1002, "reserved bits set (no extension was negotiated)")
        opcode = head.opcode
        if opcode not in _DATA and opcode not in _CONTROL:
            raise FrameError(1002, f"unknown opcode {opcode:#x}")
        if not head.masked:
            raise FrameError(1002, "unmasked frame from a client")
        if opcode in _CONTROL and (not 0 <= head.length <= 125 or not head.fin):
            raise FrameError(1002, "control frame fragmented or over 125 bytes")
        if head.length < 0:
            return None
        if head.length >> 63:
            raise FrameError(1002, "64-bit frame length with the top bit set")
        if head.length > self.max_message_size:
            raise FrameError(1009, f"frame over {self.max_message_size} bytes")
        end = head.end
        if end > len(buf):
            return None
        key = bytes(buf[head.start:head.start + 4])
        with memoryview(buf) as view:
            payload = xor_mask(key, view[head.start + 4:end])
        self._pos = end
        return head.fin, opcode, payload
