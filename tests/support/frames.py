"""Websocket frames built by hand, so decoders are never checked against crank_sync's own
encoders."""

from __future__ import annotations

import struct


def reference_mask(key: bytes, data: bytes) -> bytes:
    """RFC 6455 masking, byte by byte: the reference the fast implementations are held to."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
             mask: bytes | None = None, length: int | None = None,
             form: str | None = None) -> bytes:
    """One websocket frame built by hand: masked with ``mask`` (unmasked when None).

    ``length`` overrides the length field (the payload is still the bytes given, so the frame
    may claim more than it carries); ``form`` ("7", "16", "64") forces the length encoding,
    otherwise the shortest one is used.
    """
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if form is None:
        form = "7" if n < 126 else "16" if n < 65536 else "64"
    if form == "7":
        head = struct.pack("!BB", first, mask_bit | n)
    elif form == "16":
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + reference_mask(mask, payload)
