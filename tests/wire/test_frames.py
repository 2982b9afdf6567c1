"""Router-side websocket frames: ``crank_sync.ws.frames`` in the server role.

Client (masked) frames are built by hand (``support.ws_frame``) with a byte-at-a-time reference
mask, so the decoder is never checked against crank_sync's own encoders. ``encode_frame`` is
decoded by hand the same way. Close codes follow the module docstring: 1002 for protocol
errors, 1009 for a frame or message over ``max_message_size``.
"""
from __future__ import annotations

import random
import struct

import pytest
from support import ws_frame

from crank_sync.ws.frames import (
    FrameDecoder,
    FrameError,
    Opcode,
    Role,
    encode_frame,
)

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
BIG = 16 * 1024 * 1024
KEY = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 key: bytes | None = KEY, length: int | None = None,
                 form: str | None = None) -> bytes:
    """One frame as a connector sends it: masked with ``key`` (unmasked when None)."""
    return ws_frame(opcode, payload, fin, rsv, key, length, form)


def keyed(seed: int) -> bytes:
    return random.Random(seed).randbytes(4)


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def decode_all(wire: bytes, max_message_size: int | None = BIG) -> list[tuple[int, bytes]]:
    dec = FrameDecoder(Role.SERVER, max_message_size)
    dec.feed(wire)
    out = list(dec.messages())
    assert dec.buffered == 0
    return out


def decode_in_pieces(wire: bytes, sizes: list[int] | None = None,
                     max_message_size: int | None = BIG) -> list[tuple[int, bytes]]:
    """Feed ``wire`` in pieces of the given sizes (the rest in one piece), draining after each."""
    dec = FrameDecoder(Role.SERVER, max_message_size)
    out: list[tuple[int, bytes]] = []
    pos = 0
    for n in sizes or []:
        if pos >= len(wire):
            break
        dec.feed(wire[pos:pos + n])
        pos += n
        out.extend(dec.messages())
    if pos < len(wire):
        dec.feed(wire[pos:])
        out.extend(dec.messages())
    assert dec.buffered == 0
    return out


def error_of(wire: bytes, max_message_size: int | None = BIG) -> FrameError:
    dec = FrameDecoder(Role.SERVER, max_message_size)
    dec.feed(wire)
    with pytest.raises(FrameError) as info:
        list(dec.messages())
    return info.value


# --------------------------------------------------------------------------- constants


def test_opcode_constants_are_rfc6455() -> None:
    assert (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG) == (TEXT, BINARY, CLOSE, PING, PONG)


# --------------------------------------------------------------------------- whole messages


def test_single_binary_message() -> None:
    payload = data(300, 1)
    assert decode_all(client_frame(BINARY, payload)) == [(BINARY, payload)]


def test_single_text_message() -> None:
    payload = "héllo, wörld ✓".encode()
    assert decode_all(client_frame(TEXT, payload)) == [(TEXT, payload)]


@pytest.mark.parametrize(("size", "code"), [(0, 0), (125, 125), (126, 126), (65535, 126),
                                            (65536, 127), (200_000, 127)])
@pytest.mark.parametrize("opcode", [BINARY, TEXT])
def test_length_forms(size: int, code: int, opcode: int) -> None:
    payload = data(size, size)
    wire = client_frame(opcode, payload, key=keyed(size))
    assert wire[1] & 0x7F == code  # the length form under test really is on the wire
    assert decode_all(wire) == [(opcode, payload)]


@pytest.mark.parametrize("form", ["16", "64"])
def test_non_minimal_length_forms_are_accepted(form: str) -> None:
    """A short payload in a longer length form is still a valid frame."""
    payload = data(10, 4)
    assert decode_all(client_frame(BINARY, payload, form=form)) == [(BINARY, payload)]


def test_payloads_are_bytes() -> None:
    for opcode, payload in decode_all(client_frame(BINARY, data(1000)) + client_frame(TEXT, b"x")):
        assert type(payload) is bytes, opcode


# --------------------------------------------------------------------------- streams of frames


def mixed_wire(count: int = 60, seed: int = 11) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Many frames of assorted kinds and sizes, with the messages they should decode to."""
    rng = random.Random(seed)
    wire = bytearray()
    expected: list[tuple[int, bytes]] = []
    for i in range(count):
        kind = rng.choice(["binary", "text", "ping", "pong", "fragmented"])
        size = rng.choice([0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000])
        key = keyed(seed * 1000 + i)
        if kind == "binary":
            payload = data(size, i)
            wire += client_frame(BINARY, payload, key=key)
            expected.append((BINARY, payload))
        elif kind == "text":
            payload = ("ü" * (size // 2)).encode()
            wire += client_frame(TEXT, payload, key=key)
            expected.append((TEXT, payload))
        elif kind in ("ping", "pong"):
            payload = data(min(size, 125), i)
            opcode = PING if kind == "ping" else PONG
            wire += client_frame(opcode, payload, key=key)
            expected.append((opcode, payload))
        else:
            parts = [data(rng.choice([0, 3, 126, 5000]), i * 10 + j) for j in range(3)]
            wire += client_frame(BINARY, parts[0], fin=False, key=key)
            wire += client_frame(CONT, parts[1], fin=False, key=keyed(i + 1))
            ping = data(4, i)
            wire += client_frame(PING, ping, key=keyed(i + 2))
            wire += client_frame(CONT, parts[2], key=keyed(i + 3))
            expected.append((PING, ping))
            expected.append((BINARY, b"".join(parts)))
    return bytes(wire), expected


def test_many_frames_in_one_feed() -> None:
    wire, expected = mixed_wire()
    assert decode_all(wire) == expected


def test_one_byte_at_a_time_gives_the_same_messages() -> None:
    wire, expected = mixed_wire(count=12, seed=5)
    assert decode_in_pieces(wire, [1] * len(wire)) == expected


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_random_pieces_give_the_same_messages(seed: int) -> None:
    wire, expected = mixed_wire(seed=seed + 20)
    rng = random.Random(seed)
    sizes = []
    total = 0
    while total < len(wire):
        n = rng.choice([1, 2, 3, rng.randint(1, 20), rng.randint(1, 5000), rng.randint(1, 200_000)])
        sizes.append(n)
        total += n
    assert decode_in_pieces(wire, sizes) == expected


def test_frame_split_at_every_header_position() -> None:
    """Each cut inside a header (short, 16- and 64-bit forms, and the mask) waits for more."""
    for size in (5, 300, 70000):
        payload = data(size, size)
        wire = client_frame(BINARY, payload, key=keyed(size))
        for cut in range(1, 15):
            assert decode_in_pieces(wire, [cut]) == [(BINARY, payload)], (size, cut)


def test_fed_memoryview_is_copied() -> None:
    """The router receives into one reused buffer: a frame must survive that buffer being
    overwritten after ``feed``."""
    payload = data(1000, 9)
    wire = client_frame(BINARY, payload)
    chunk = bytearray(4096)
    dec = FrameDecoder(Role.SERVER, BIG)
    half = 600
    chunk[:half] = wire[:half]
    dec.feed(memoryview(chunk)[:half])
    chunk[:] = b"\xee" * len(chunk)
    assert list(dec.messages()) == []
    rest = wire[half:]
    chunk[:len(rest)] = rest
    dec.feed(memoryview(chunk)[:len(rest)])
    chunk[:] = b"\xdd" * len(chunk)
    assert list(dec.messages()) == [(BINARY, payload)]


def test_feed_accepts_bytes_bytearray_and_memoryview() -> None:
    a, b, c = data(10, 1), data(200, 2), data(70000, 3)
    dec = FrameDecoder(Role.SERVER, BIG)
    dec.feed(client_frame(BINARY, a))
    dec.feed(bytearray(client_frame(BINARY, b)))
    dec.feed(memoryview(client_frame(BINARY, c)))
    assert list(dec.messages()) == [(BINARY, a), (BINARY, b), (BINARY, c)]


# --------------------------------------------------------------------------- fragmentation


def test_fragmented_text_message_is_reassembled() -> None:
    wire = (client_frame(TEXT, b"Hel", fin=False, key=keyed(1))
            + client_frame(CONT, b"lo, ", fin=False, key=keyed(2))
            + client_frame(CONT, b"world", key=keyed(3)))
    assert decode_all(wire) == [(TEXT, b"Hello, world")]


def test_fragmented_binary_message_with_empty_and_large_fragments() -> None:
    parts = [b"", data(70000, 1), b"", data(126, 2), b""]
    wire = client_frame(BINARY, parts[0], fin=False)
    for part in parts[1:-1]:
        wire += client_frame(CONT, part, fin=False)
    wire += client_frame(CONT, parts[-1])
    assert decode_all(wire) == [(BINARY, b"".join(parts))]


def test_fragmented_message_is_only_yielded_when_complete() -> None:
    dec = FrameDecoder(Role.SERVER, BIG)
    dec.feed(client_frame(TEXT, b"abc", fin=False) + client_frame(CONT, b"def", fin=False))
    assert list(dec.messages()) == []
    assert dec.buffered == 0
    dec.feed(client_frame(CONT, b"ghi"))
    assert list(dec.messages()) == [(TEXT, b"abcdefghi")]


def test_control_frames_inside_a_fragmented_message_come_out_in_order() -> None:
    wire = (client_frame(TEXT, b"one ", fin=False, key=keyed(1))
            + client_frame(PING, b"p1", key=keyed(2))
            + client_frame(CONT, b"two ", fin=False, key=keyed(3))
            + client_frame(PONG, b"p2", key=keyed(4))
            + client_frame(PING, b"", key=keyed(5))
            + client_frame(CONT, b"three", key=keyed(6))
            + client_frame(CLOSE, struct.pack("!H", 1000) + b"bye", key=keyed(7)))
    expected = [(PING, b"p1"), (PONG, b"p2"), (PING, b""), (TEXT, b"one two three"),
                (CLOSE, b"\x03\xe8bye")]
    assert decode_all(wire) == expected
    assert decode_in_pieces(wire, [1] * len(wire)) == expected


def test_close_frame_inside_a_fragmented_message_is_yielded() -> None:
    wire = (client_frame(BINARY, b"part", fin=False)
            + client_frame(CLOSE, struct.pack("!H", 1001)))
    assert decode_all(wire) == [(CLOSE, b"\x03\xe9")]


def test_new_message_after_a_fragmented_one_completes() -> None:
    wire = (client_frame(BINARY, b"a", fin=False) + client_frame(CONT, b"b")
            + client_frame(TEXT, b"c", fin=False) + client_frame(CONT, b"d")
            + client_frame(BINARY, b"e"))
    assert decode_all(wire) == [(BINARY, b"ab"), (TEXT, b"cd"), (BINARY, b"e")]


# --------------------------------------------------------------------------- buffered


def test_buffered_reports_leftover_partial_bytes() -> None:
    dec = FrameDecoder(Role.SERVER, BIG)
    assert dec.buffered == 0
    first = client_frame(BINARY, b"complete")
    second = client_frame(BINARY, data(300, 5))
    dec.feed(first + second[:7])
    assert dec.buffered == len(first) + 7
    assert list(dec.messages()) == [(BINARY, b"complete")]
    assert dec.buffered == 7
    dec.feed(second[7:100])
    assert list(dec.messages()) == []
    assert dec.buffered == 100
    dec.feed(second[100:])
    assert list(dec.messages()) == [(BINARY, data(300, 5))]
    assert dec.buffered == 0


def test_buffered_one_byte() -> None:
    dec = FrameDecoder(Role.SERVER, BIG)
    dec.feed(client_frame(BINARY, b"x")[:1])
    assert list(dec.messages()) == []
    assert dec.buffered == 1


# --------------------------------------------------------------------------- protocol errors


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001, 0b111], ids=["rsv1", "rsv2", "rsv3", "all"])
@pytest.mark.parametrize("opcode", [BINARY, TEXT, CONT, PING])
def test_reserved_bits_are_1002(rsv: int, opcode: int) -> None:
    err = error_of(client_frame(opcode, b"abc", rsv=rsv))
    assert err.code == 1002
    assert "reserved" in err.reason


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcode_is_1002(opcode: int) -> None:
    err = error_of(client_frame(opcode, b"abc"))
    assert err.code == 1002
    assert "opcode" in err.reason


@pytest.mark.parametrize("opcode", [BINARY, TEXT, PING, PONG, CLOSE])
def test_unmasked_frame_is_1002(opcode: int) -> None:
    err = error_of(client_frame(opcode, b"abc", key=None))
    assert err.code == 1002
    assert "unmasked" in err.reason


def test_unmasked_continuation_is_1002() -> None:
    err = error_of(client_frame(BINARY, b"abc", fin=False) + client_frame(CONT, b"d", key=None))
    assert err.code == 1002


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame_is_1002(opcode: int) -> None:
    assert error_of(client_frame(opcode, b"", fin=False)).code == 1002


@pytest.mark.parametrize("form", ["16", "64"])
@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_over_125_bytes_is_1002(opcode: int, form: str) -> None:
    assert error_of(client_frame(opcode, data(126), form=form)).code == 1002


@pytest.mark.parametrize("opcode", [PING, PONG])
def test_control_frame_of_125_bytes_is_fine(opcode: int) -> None:
    payload = data(125, 8)
    assert decode_all(client_frame(opcode, payload)) == [(opcode, payload)]


def test_control_frame_error_needs_only_the_first_two_bytes() -> None:
    dec = FrameDecoder(Role.SERVER, BIG)
    dec.feed(client_frame(PING, data(126), form="16")[:2])
    with pytest.raises(FrameError) as info:
        list(dec.messages())
    assert info.value.code == 1002


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_a_message_is_1002(fin: bool) -> None:
    err = error_of(client_frame(CONT, b"orphan", fin=fin))
    assert err.code == 1002
    assert "continu" in err.reason


def test_continuation_after_a_completed_message_is_1002() -> None:
    wire = (client_frame(TEXT, b"a", fin=False) + client_frame(CONT, b"b")
            + client_frame(CONT, b"c"))
    dec = FrameDecoder(Role.SERVER, BIG)
    dec.feed(wire)
    messages = dec.messages()
    assert next(messages) == (TEXT, b"ab")
    with pytest.raises(FrameError) as info:
        next(messages)
    assert info.value.code == 1002


@pytest.mark.parametrize("second", [TEXT, BINARY])
@pytest.mark.parametrize("first", [TEXT, BINARY])
@pytest.mark.parametrize("fin", [True, False])
def test_new_message_inside_a_fragmented_one_is_1002(first: int, second: int, fin: bool) -> None:
    wire = client_frame(first, b"start", fin=False) + client_frame(second, b"new", fin=fin)
    err = error_of(wire)
    assert err.code == 1002


def test_error_after_good_messages_yields_them_first() -> None:
    dec = FrameDecoder(Role.SERVER, BIG)
    dec.feed(client_frame(BINARY, b"good") + client_frame(0x3, b"bad"))
    messages = dec.messages()
    assert next(messages) == (BINARY, b"good")
    with pytest.raises(FrameError) as info:
        next(messages)
    assert info.value.code == 1002


def test_frame_error_carries_code_and_reason() -> None:
    err = FrameError(1002, "some reason")
    assert err.code == 1002
    assert err.reason == "some reason"
    assert str(err) == "some reason"
    assert isinstance(err, Exception)


# --------------------------------------------------------------------------- size limits


@pytest.mark.parametrize(("limit", "claimed", "form"), [
    (100, 101, "7"),
    (100, 126, "16"),
    (1000, 65535, "16"),
    (1000, 65536, "64"),
    (1 << 20, 32 << 20, "64"),
    (1 << 20, (1 << 63) - 1, "64"),
])
def test_frame_over_the_limit_is_1009_as_soon_as_the_header_is_complete(
        limit: int, claimed: int, form: str) -> None:
    """Only the header is fed (not even the mask key): the claim alone is refused."""
    header = client_frame(BINARY, b"", length=claimed, form=form)[:{"7": 2, "16": 4, "64": 10}[form]]
    dec = FrameDecoder(Role.SERVER, limit)
    for byte in header[:-1]:
        dec.feed(bytes([byte]))
        assert list(dec.messages()) == []  # not complete yet: no verdict
    dec.feed(header[-1:])
    with pytest.raises(FrameError) as info:
        list(dec.messages())
    assert info.value.code == 1009


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    payload = data(1000, 1)
    assert decode_all(client_frame(BINARY, payload), max_message_size=1000) == [(BINARY, payload)]
    assert error_of(client_frame(BINARY, data(1001)), max_message_size=1000).code == 1009


def test_fragmented_message_over_the_limit_is_1009() -> None:
    wire = (client_frame(BINARY, data(400, 1), fin=False)
            + client_frame(CONT, data(400, 2), fin=False)
            + client_frame(CONT, data(400, 3)))
    err = error_of(wire, max_message_size=1000)
    assert err.code == 1009


def test_fragmented_message_over_the_limit_is_refused_before_it_ends() -> None:
    """The total is checked per fragment: a message that never ends cannot grow forever."""
    dec = FrameDecoder(Role.SERVER, 1000)
    dec.feed(client_frame(TEXT, data(600, 1), fin=False))
    assert list(dec.messages()) == []
    dec.feed(client_frame(CONT, data(600, 2), fin=False))
    with pytest.raises(FrameError) as info:
        list(dec.messages())
    assert info.value.code == 1009


def test_fragmented_message_of_exactly_the_limit_is_accepted() -> None:
    parts = [data(300, 1), data(300, 2), data(400, 3)]
    wire = (client_frame(BINARY, parts[0], fin=False) + client_frame(CONT, parts[1], fin=False)
            + client_frame(CONT, parts[2]))
    assert decode_all(wire, max_message_size=1000) == [(BINARY, b"".join(parts))]


def test_control_frames_inside_a_fragmented_message_do_not_count_towards_the_limit() -> None:
    wire = (client_frame(BINARY, data(500, 1), fin=False)
            + client_frame(PING, data(125, 2))
            + client_frame(CONT, data(500, 3)))
    assert [op for op, _ in decode_all(wire, max_message_size=1000)] == [PING, BINARY]


@pytest.mark.parametrize("limit", [None, 0])
def test_no_limit(limit: int | None) -> None:
    payload = data(200_000, 3)
    assert decode_all(client_frame(BINARY, payload), max_message_size=limit) == [(BINARY, payload)]


# --------------------------------------------------------------------------- encode_frame


def decode_server_frame(wire: bytes) -> tuple[bool, int, int, int, bool, bytes]:
    """Hand-decode one server frame: (fin, rsv, opcode, length code, masked, payload)."""
    first, second = wire[0], wire[1]
    code = second & 0x7F
    pos = 2
    length = code
    if code == 126:
        (length,) = struct.unpack_from("!H", wire, pos)
        pos = 4
    elif code == 127:
        (length,) = struct.unpack_from("!Q", wire, pos)
        pos = 10
    assert len(wire) == pos + length, "frame length does not match the bytes written"
    return (bool(first & 0x80), (first >> 4) & 7, first & 0x0F, code, bool(second & 0x80),
            wire[pos:])


@pytest.mark.parametrize(("size", "code"), [(0, 0), (1, 1), (125, 125), (126, 126),
                                            (65535, 126), (65536, 127), (200_000, 127)])
@pytest.mark.parametrize("opcode", [BINARY, TEXT, PING, PONG, CLOSE])
def test_encode_frame_length_forms(opcode: int, size: int, code: int) -> None:
    payload = data(size, size)
    fin, rsv, op, length_code, masked, body = decode_server_frame(encode_frame(opcode, payload))
    assert fin is True
    assert rsv == 0
    assert op == opcode
    assert masked is False
    assert length_code == code
    assert body == payload


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("size", [0, 10, 126, 65536])
def test_encode_frame_accepts_buffer_types(kind: type, size: int) -> None:
    payload = data(size, 2)
    out = encode_frame(BINARY, kind(payload))
    assert type(out) is bytes
    assert out == encode_frame(BINARY, payload)
    assert decode_server_frame(out)[5] == payload


def test_encode_frame_of_a_memoryview_slice() -> None:
    buf = data(1000, 4)
    out = encode_frame(BINARY, memoryview(buf)[100:300])
    assert decode_server_frame(out)[5] == buf[100:300]
