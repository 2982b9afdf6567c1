"""The websocket tunnel's pure parts: capability tokens, upgrade detection, close frames and
the frame-boundary tracker the router's idle close relies on."""
from __future__ import annotations

import random
import struct

import pytest

from crank_sync.protocol.tunnel import (
    FrameBoundaries,
    capabilities,
    close_frame,
    is_websocket_upgrade,
    upgrade_headers,
)


def frame(payload: bytes, masked: bool, opcode: int = 0x2, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    return head + (b"mask" if masked else b"") + payload


def test_capability_tokens() -> None:
    assert capabilities(" WebSocket , other") == {"websocket", "other"}
    assert capabilities(None) == frozenset() == capabilities("")


@pytest.mark.parametrize(("headers", "upgrade"), [
    ([("Connection", "Upgrade"), ("Upgrade", "websocket")], True),
    ([("connection", "keep-alive, upgrade"), ("upgrade", "WebSocket")], True),
    ([("Upgrade", "websocket")], False),  # no Connection: upgrade
    ([("Connection", "Upgrade"), ("Upgrade", "h2c")], False),
    ([("Connection", "close")], False),
])
def test_websocket_upgrades(headers: list[tuple[str, str]], upgrade: bool) -> None:
    assert is_websocket_upgrade(headers) is upgrade


def test_upgrade_headers_replace_the_hop_by_hop_ones() -> None:
    out = upgrade_headers([("Sec-WebSocket-Accept", "abc"), ("Content-Length", "0"),
                           ("Upgrade", "WEBSOCKET"), ("Set-Cookie", "a=1")])
    assert out == [("Sec-WebSocket-Accept", "abc"), ("Set-Cookie", "a=1"),
                   ("Connection", "Upgrade"), ("Upgrade", "websocket")]


@pytest.mark.parametrize("masked", [False, True])
def test_close_frames(masked: bool) -> None:
    data = close_frame(1001, "idle timeout", masked)
    assert data[0] == 0x88 and bool(data[1] & 0x80) is masked
    payload = data[6:] if masked else data[2:]
    if masked:
        payload = bytes(b ^ data[2 + i % 4] for i, b in enumerate(payload))
    assert payload == struct.pack("!H", 1001) + b"idle timeout"
    tracker = FrameBoundaries()
    tracker.feed(data)
    assert tracker.closed and not tracker.at_boundary


def test_boundaries_are_found_however_the_bytes_are_cut() -> None:
    rng = random.Random(7)
    stream, boundaries = b"", {0}
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        for masked in (False, True):
            stream += frame(rng.randbytes(size), masked)
            boundaries.add(len(stream))
    stream += frame(b"ping", True, opcode=0x9) + frame(b"part", False, opcode=0x1, fin=False)
    boundaries.update({len(stream) - 6, len(stream)})
    for _ in range(300):
        tracker, position = FrameBoundaries(), 0
        for cut in [*sorted(rng.sample(range(1, len(stream)), 25)), len(stream)]:
            tracker.feed(stream[position:cut])
            position = cut
            assert tracker.at_boundary is (cut in boundaries), cut
        assert tracker.frames == 18 and not tracker.closed
