"""Cranker v3.0 frames and per-stream flow-control accounting (sans-IO).

Every Cranker v3 message is one binary websocket message::

    byte 0      message type        byte 1  flags
    bytes 2..5  request id, int32 big-endian
    bytes 6..   payload
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import LocalProtocolError, RemoteProtocolError

DATA = 0
HEADER = 1
RST_STREAM = 3
WINDOW_UPDATE = 8
KNOWN_TYPES = frozenset({DATA, HEADER, RST_STREAM, WINDOW_UPDATE})

END_STREAM = 1
END_HEADER = 4

#: Header text longer than this many characters is split over several HEADER frames.
MAX_HEADER_CHARS = 16000
#: Above this many unacknowledged bytes a sender stops reading its source...
HIGH_WATER = 64 * 1024
#: ...and resumes once acknowledgements bring the count below this.
LOW_WATER = 16 * 1024

#: RST_STREAM codes.
RST_CLIENT_GONE = 1
RST_TARGET_FAILED = 1011
#: Sent by the router to a connector that ignored the stream's flow control.
RST_PROTOCOL_ERROR = 1002

_PREFIX = struct.Struct(">BBi")
#: The 6-byte prefix of every message: type, flags, stream id.
PREFIX = _PREFIX
_INT = struct.Struct(">i")
MAX_STREAM_ID = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class Frame:
    """One decoded v3 message."""

    type: int
    flags: int
    stream_id: int
    payload: bytes = b""

    @property
    def end_stream(self) -> bool:
        return bool(self.flags & END_STREAM)

    @property
    def end_header(self) -> bool:
        return bool(self.flags & END_HEADER)

    def rst_code(self) -> tuple[int, str]:
        """Code and message of a RST_STREAM payload (code 0 when it carries none)."""
        if len(self.payload) < 4:
            return 0, ""
        code = _INT.unpack_from(self.payload)[0]
        return code, self.payload[4:].decode("utf-8", "replace")

    def window_increment(self) -> int:
        if len(self.payload) < 4:
            raise RemoteProtocolError("WINDOW_UPDATE without a 4-byte increment")
        return int(_INT.unpack_from(self.payload)[0])


def _prefix(kind: int, flags: int, stream_id: int) -> bytes:
    if not 0 < stream_id <= MAX_STREAM_ID:
        raise LocalProtocolError(f"invalid stream id {stream_id}")
    return _PREFIX.pack(kind, flags, stream_id)


def data_frame(stream_id: int, data: bytes = b"", end_stream: bool = False) -> bytes:
    return _prefix(DATA, END_STREAM if end_stream else 0, stream_id) + data


def header_frames(stream_id: int, text: str, end_stream: bool) -> list[bytes]:
    """HEADER frames carrying ``text``, split at 16,000 characters (and at 16,000 bytes of
    UTF-8, so no message exceeds a peer's 16 KiB limit); only the last has END_HEADER."""
    pieces = [text[i:i + MAX_HEADER_CHARS] for i in range(0, len(text), MAX_HEADER_CHARS)] or [""]
    encoded = [p.encode("utf-8") for p in pieces]
    if any(len(e) > MAX_HEADER_CHARS for e in encoded):
        encoded = _split_encoded(text)  # non-ASCII: keep every message within 16 KiB too
    frames = []
    for index, piece in enumerate(encoded):
        last = index == len(encoded) - 1
        flags = (END_HEADER | (END_STREAM if end_stream else 0)) if last else 0
        frames.append(_prefix(HEADER, flags, stream_id) + piece)
    return frames


def _split_encoded(text: str) -> list[bytes]:
    """``text`` as UTF-8 pieces of at most MAX_HEADER_CHARS bytes, cut between characters."""
    out: list[bytes] = []
    piece = bytearray()
    for char in text:
        data = char.encode("utf-8")
        if len(piece) + len(data) > MAX_HEADER_CHARS:
            out.append(bytes(piece))
            piece.clear()
        piece += data
    out.append(bytes(piece))
    return out


def rst_frame(stream_id: int, code: int, message: str = "") -> bytes:
    if not -(2**31) <= code < 2**31:
        raise LocalProtocolError(f"RST_STREAM code {code} does not fit in an int32")
    return _prefix(RST_STREAM, 0, stream_id) + _INT.pack(code) + message.encode("utf-8")


def window_update_frame(stream_id: int, increment: int) -> bytes:
    if not 0 <= increment < 2**31:
        raise LocalProtocolError(f"window update {increment} is not a non-negative int32")
    return _prefix(WINDOW_UPDATE, 0, stream_id) + _INT.pack(increment)


def decode(message: bytes) -> Frame:
    """Decode one binary websocket message. Unknown types decode too: callers drop them."""
    if len(message) < _PREFIX.size:
        raise RemoteProtocolError(f"v3 message of {len(message)} bytes is shorter than 6")
    kind, flags, stream_id = _PREFIX.unpack_from(message)
    return Frame(type=kind, flags=flags, stream_id=stream_id, payload=bytes(message[6:]))


class HeaderAssembler:
    """Joins the payloads of HEADER frames until one carries END_HEADER."""

    def __init__(self, limit: int = 1024 * 1024) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit

    def feed(self, frame: Frame) -> str | None:
        """Add a HEADER frame; the whole header text once END_HEADER arrived, else None."""
        self._size += len(frame.payload)
        if self._size > self._limit:
            self._parts, self._size = [], 0
            raise RemoteProtocolError(f"header text over {self._limit} bytes")
        self._parts.append(frame.payload)
        if not frame.end_header:
            return None
        data = b"".join(self._parts)
        self._parts = []
        self._size = 0
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RemoteProtocolError("header text is not UTF-8") from err


class SendWindow:
    """Unacknowledged bytes of one stream in one direction, with 64 KiB / 16 KiB hysteresis.

    ``sent(n)`` after sending a payload, ``acked(n)`` on WINDOW_UPDATE; ``paused`` says whether
    the sender must stop reading its source.
    """

    def __init__(self, high: int = HIGH_WATER, low: int = LOW_WATER) -> None:
        self.high = high
        self.low = low
        self.unacked = 0
        self.paused = False

    def sent(self, n: int) -> None:
        self.unacked += n
        if self.unacked > self.high:
            self.paused = True

    def acked(self, n: int) -> bool:
        """Count an acknowledgement; True when it lets a paused sender resume."""
        self.unacked = max(0, self.unacked - n)
        if self.paused and self.unacked < self.low:
            self.paused = False
            return True
        return False
