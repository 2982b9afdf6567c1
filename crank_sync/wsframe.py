"""The websocket frame head (RFC 6455 section 5.2), shared by the router and the connector.

Each side keeps its own checks and errors (a router refuses unmasked frames, a connector masked
ones); this module only reads and writes the 2 to 14 bytes in front of a payload.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["FrameHead", "encode_head", "parse_head"]

_H = struct.Struct("!H")
_Q = struct.Struct("!Q")


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
