"""Websocket frames (RFC 6455 section 5): the head, encoding, and one sans-IO decoder.

wsproto and websocket-client decode a frame in several steps (generator steps or two or three
``recv`` calls), copy the payload several times and unmask it with a byte loop; on a bulk
transfer that was over half the CPU time. :class:`FrameDecoder` parses frames straight out of
one receive buffer and unmasks each payload with one call of :func:`~.masking.xor_mask`;
:func:`encode_frame` builds a frame with one ``struct.pack``.

Checks applied to every frame, each failing with :class:`FrameError` and the close code shown:
reserved bits or an unknown opcode (1002), a frame masked the wrong way for the role (1002), a
control frame that is fragmented or over 125 bytes (1002), a continuation with no message to
continue, or a new message inside a fragmented one (1002), a frame or message over
``max_message_size`` (1009).
"""
from __future__ import annotations

import enum
import os
import struct
import threading
from collections.abc import Iterator
from typing import NamedTuple

from ..errors import FrameError
from .masking import xor_mask

__all__ = ["FrameDecoder", "FrameError", "FrameHead", "Opcode", "Role", "encode_frame",
           "encode_head", "mask_keys", "parse_head"]

_H = struct.Struct("!H")
_Q = struct.Struct("!Q")


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class Role(enum.Enum):
    """Which end decodes: a server requires masked frames, a client unmasked ones."""

    SERVER = "server"
    CLIENT = "client"


_DATA = frozenset({0x0, 0x1, 0x2})
_CONTROL = frozenset({0x8, 0x9, 0xA})


class FrameHead(NamedTuple):
    first: int  # FIN, RSV1-3 and the opcode, as sent
    masked: bool
    length: int  # payload bytes; -1 while the extended length has not all arrived
    start: int  # offset of the mask key when masked, else of the payload

    @property
    def fin(self) -> bool:
        return bool(self.first & 0x80)

    @property
    def opcode(self) -> int:
        return self.first & 0x0F

    @property
    def rsv(self) -> int:
        return self.first & 0x70

    @property
    def end(self) -> int:
        """Offset just past the payload."""
        return self.start + (4 if self.masked else 0) + self.length


def parse_head(buf: bytes | bytearray, pos: int) -> FrameHead | None:
    """The head of the frame at ``buf[pos:]``: None before its first two bytes, ``length`` -1
    until its extended length is complete (the first two bytes can already be checked)."""
    available = len(buf) - pos
    if available < 2:
        return None
    first, second = buf[pos], buf[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if available < 4:
            return FrameHead(first, bool(second & 0x80), -1, start)
        (length,) = _H.unpack_from(buf, start)
        start += 2
    elif length == 127:
        if available < 10:
            return FrameHead(first, bool(second & 0x80), -1, start)
        (length,) = _Q.unpack_from(buf, start)
        start += 8
    return FrameHead(first, bool(second & 0x80), length, start)


def encode_head(opcode: int, length: int, masked: bool) -> bytes:
    """The head of one final frame (the mask key, when masked, is the caller's to append)."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, mask_bit | length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)


class _MaskKeys(threading.local):
    def __init__(self) -> None:
        self.block = b""
        self.pos = 0

    def __call__(self, length: int = 4) -> bytes:
        if self.pos + length > len(self.block):
            self.block = os.urandom(4096)
            self.pos = 0
        key = self.block[self.pos:self.pos + length]
        self.pos += length
        return key


#: Cryptographically random mask keys, four bytes at a time, one system call per 1,024 keys
#: (websocket-client draws each from ``os.urandom``).
mask_keys = _MaskKeys()


def encode_frame(opcode: int, payload: bytes | bytearray | memoryview, *,
                 masked: bool = False) -> bytes:
    """One final frame: masked (a client's) or not (a server's)."""
    if masked:
        key = mask_keys()
        return b"".join((encode_head(opcode, len(payload), True), key, xor_mask(key, payload)))
    head = encode_head(opcode, len(payload), False)
    return head + payload if isinstance(payload, bytes) else head + bytes(payload)


class FrameDecoder:
    """Frames in (:meth:`feed`), whole messages and control frames out (:meth:`next`)."""

    def __init__(self, role: Role, max_message_size: int | None) -> None:
        self.masked = role is Role.SERVER
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

    @property
    def in_message(self) -> bool:
        """A fragmented message has begun and not ended."""
        return bool(self._opcode)

    def missing(self) -> int:
        """Bytes still to come of the frame begun at the read position (its head first)."""
        available = len(self._buf) - self._pos
        if available < 2:
            return 2 - available
        head = parse_head(self._buf, self._pos)
        assert head is not None
        if head.length < 0:
            return (4 if self._buf[self._pos + 1] & 0x7F == 126 else 10) - available
        return max(0, head.end - len(self._buf))

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """``(opcode, payload)`` of each whole message and control frame now complete."""
        while (message := self.next()) is not None:
            yield message

    def next(self) -> tuple[int, bytes] | None:
        """The next whole message or control frame, or None until more bytes are fed."""
        while True:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode in _CONTROL:
                return opcode, payload
            if opcode == 0x0:
                if not self._opcode:
                    raise FrameError(1002, "continuation frame with no message to continue")
                self._add(payload)
                if fin:
                    opcode, self._opcode = self._opcode, 0
                    payload = b"".join(self._parts)
                    self._parts = []
                    self._size = 0
                    return opcode, payload
                continue
            if self._opcode:
                raise FrameError(1002, "new message inside a fragmented message")
            if fin:
                return opcode, payload
            self._opcode = opcode
            self._add(payload)

    def _add(self, payload: bytes) -> None:
        self._size += len(payload)
        if self._size > self.max_message_size:
            raise FrameError(1009, f"message over {self.max_message_size} bytes")
        self._parts.append(payload)

    def _check(self, head: FrameHead) -> None:
        if head.rsv:
            raise FrameError(1002, "reserved bits set (no extension was negotiated)")
        opcode = head.opcode
        if opcode not in _DATA and opcode not in _CONTROL:
            raise FrameError(1002, f"unknown opcode {opcode:#x}")
        if head.masked != self.masked:
            raise FrameError(1002, "unmasked frame from a client" if self.masked
                             else "masked frame from a server")
        if opcode in _CONTROL and (not 0 <= head.length <= 125 or not head.fin):
            raise FrameError(1002, "control frame fragmented or over 125 bytes")

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        head = parse_head(buf, self._pos)
        if head is None:
            return None
        self._check(head)
        if head.length < 0:
            return None
        if head.length >> 63:
            raise FrameError(1002, "64-bit frame length with the top bit set", too_long=True)
        if head.length > self.max_message_size:
            raise FrameError(1009, f"frame over {self.max_message_size} bytes")
        end = head.end
        if end > len(buf):
            return None
        with memoryview(buf) as view:  # one copy (a bytearray slice would be two)
            if self.masked:
                key = bytes(buf[head.start:head.start + 4])
                payload = xor_mask(key, view[head.start + 4:end])
            else:
                payload = bytes(view[head.start:end])
        self._pos = end
        return head.fin, head.opcode, payload
