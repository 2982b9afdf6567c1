"""Cranker v3.0 codec: binary frames, header reassembly and per-stream flow-control accounting.

Pure tables of ``(input, expected)`` rows; see PROTOCOL.md, "v3.0: multiplexed binary frames".
Every message is ``type byte, flags byte, int32 big-endian id, payload``.
"""
from __future__ import annotations

import random

import pytest

from crank_sync.errors import LocalProtocolError, RemoteProtocolError
from crank_sync.protocol.v3 import (
    DATA,
    END_HEADER,
    END_STREAM,
    HEADER,
    HIGH_WATER,
    KNOWN_TYPES,
    LOW_WATER,
    MAX_HEADER_CHARS,
    MAX_STREAM_ID,
    RST_CLIENT_GONE,
    RST_STREAM,
    RST_TARGET_FAILED,
    WINDOW_UPDATE,
    Frame,
    HeaderAssembler,
    SendWindow,
    data_frame,
    decode,
    header_frames,
    rst_frame,
    window_update_frame,
)

# --------------------------------------------------------------------------- constants

CONSTANT_ROWS = [
    pytest.param(DATA, 0, id="DATA"),
    pytest.param(HEADER, 1, id="HEADER"),
    pytest.param(RST_STREAM, 3, id="RST_STREAM"),
    pytest.param(WINDOW_UPDATE, 8, id="WINDOW_UPDATE"),
    pytest.param(END_STREAM, 1, id="END_STREAM"),
    pytest.param(END_HEADER, 4, id="END_HEADER"),
    pytest.param(MAX_HEADER_CHARS, 16000, id="max-header-chars"),
    pytest.param(HIGH_WATER, 65536, id="high-water-64KiB"),
    pytest.param(LOW_WATER, 16384, id="low-water-16KiB"),
    pytest.param(RST_CLIENT_GONE, 1, id="rst-client-gone"),
    pytest.param(RST_TARGET_FAILED, 1011, id="rst-target-failed"),
    pytest.param(MAX_STREAM_ID, 2147483647, id="max-stream-id"),
    pytest.param(KNOWN_TYPES, frozenset({0, 1, 3, 8}), id="known-types"),
]


@pytest.mark.parametrize(("value", "expected"), CONSTANT_ROWS)
def test_constants_follow_the_spec(value: object, expected: object) -> None:
    assert value == expected


# --------------------------------------------------------------------------- data_frame

DATA_FRAME_ROWS = [
    pytest.param((1, b"hello", False), b"\x00\x00\x00\x00\x00\x01hello", id="body-chunk"),
    pytest.param((1, b"", True), b"\x00\x01\x00\x00\x00\x01", id="empty-end-stream"),
    pytest.param((1, b"last", True), b"\x00\x01\x00\x00\x00\x01last", id="end-stream-with-bytes"),
    pytest.param((1, b"", False), b"\x00\x00\x00\x00\x00\x01", id="empty-no-flags"),
    pytest.param((258, b"x", False), b"\x00\x00\x00\x00\x01\x02x", id="id-258-big-endian"),
    pytest.param((0x01020304, b"", False), b"\x00\x00\x01\x02\x03\x04", id="id-four-bytes"),
    pytest.param((MAX_STREAM_ID, b"", True), b"\x00\x01\x7f\xff\xff\xff", id="max-id"),
    pytest.param((7, b"\x00\xff\x80", False), b"\x00\x00\x00\x00\x00\x07\x00\xff\x80", id="binary-payload"),
]


@pytest.mark.parametrize(("args", "expected"), DATA_FRAME_ROWS)
def test_data_frame(args: tuple, expected: bytes) -> None:
    assert data_frame(*args) == expected


def test_data_frame_defaults_to_empty_without_end_stream() -> None:
    assert data_frame(1) == b"\x00\x00\x00\x00\x00\x01"


# --------------------------------------------------------------------------- header_frames

HEADER_FRAMES_ROWS = [
    pytest.param(
        (1, "GET / HTTP/1.1\n\n", True),
        [b"\x01\x05\x00\x00\x00\x01GET / HTTP/1.1\n\n"],
        id="request-without-body-flags-5",
    ),
    pytest.param(
        (1, "POST / HTTP/1.1\nContent-Length:3\n\n", False),
        [b"\x01\x04\x00\x00\x00\x01POST / HTTP/1.1\nContent-Length:3\n\n"],
        id="request-with-body-flags-4",
    ),
    pytest.param(
        (9, "HTTP/1.1 200 OK\n", False),
        [b"\x01\x04\x00\x00\x00\x09HTTP/1.1 200 OK\n"],
        id="response-head",
    ),
    pytest.param(
        (3, "X:caf\u00e9\n", False),
        [b"\x01\x04\x00\x00\x00\x03X:caf\xc3\xa9\n"],
        id="utf8-payload",
    ),
    pytest.param((1, "", False), [b"\x01\x04\x00\x00\x00\x01"], id="empty-text-one-frame"),
    pytest.param((1, "", True), [b"\x01\x05\x00\x00\x00\x01"], id="empty-text-end-stream"),
    pytest.param(
        (1, "a" * 16000, True),
        [b"\x01\x05\x00\x00\x00\x01" + b"a" * 16000],
        id="exactly-16000-one-frame",
    ),
    pytest.param(
        (1, "a" * 16001, True),
        [b"\x01\x00\x00\x00\x00\x01" + b"a" * 16000, b"\x01\x05\x00\x00\x00\x01a"],
        id="16001-two-frames-end-stream-last-only",
    ),
    pytest.param(
        (1, "a" * 16001, False),
        [b"\x01\x00\x00\x00\x00\x01" + b"a" * 16000, b"\x01\x04\x00\x00\x00\x01a"],
        id="16001-two-frames-end-header-last-only",
    ),
    pytest.param(
        (2, "a" * 16000 + "b" * 16000, False),
        [b"\x01\x00\x00\x00\x00\x02" + b"a" * 16000, b"\x01\x04\x00\x00\x00\x02" + b"b" * 16000],
        id="32000-exactly-two-full-frames",
    ),
    pytest.param(
        (2, "a" * 16000 + "b" * 16000 + "c", True),
        [
            b"\x01\x00\x00\x00\x00\x02" + b"a" * 16000,
            b"\x01\x00\x00\x00\x00\x02" + b"b" * 16000,
            b"\x01\x05\x00\x00\x00\x02c",
        ],
        id="32001-three-frames",
    ),
    pytest.param(
        (1, "\u00e9" * 16001, False),
        [b"\x01\x00\x00\x00\x00\x01" + b"\xc3\xa9" * 8000,
         b"\x01\x00\x00\x00\x00\x01" + b"\xc3\xa9" * 8000, b"\x01\x04\x00\x00\x00\x01\xc3\xa9"],
        id="two-byte-chars-split-between-characters-at-16000-bytes",
    ),
    pytest.param(
        (1, "\u00e9" * 16000, False),
        [b"\x01\x00\x00\x00\x00\x01" + b"\xc3\xa9" * 8000,
         b"\x01\x04\x00\x00\x00\x01" + b"\xc3\xa9" * 8000],
        id="16000-two-byte-chars-32000-bytes-two-frames-within-16-kib",
    ),
    pytest.param(
        (1, "a" * 15999 + "\U0001f600" + "z", True),
        [
            b"\x01\x00\x00\x00\x00\x01" + b"a" * 15999,
            b"\x01\x05\x00\x00\x00\x01\xf0\x9f\x98\x80z",
        ],
        id="four-byte-char-at-boundary-stays-whole",
    ),
    pytest.param(
        (1, "a" * 16000 + "\u20ac", False),
        [b"\x01\x00\x00\x00\x00\x01" + b"a" * 16000, b"\x01\x04\x00\x00\x00\x01\xe2\x82\xac"],
        id="three-byte-char-starts-second-frame",
    ),
]


@pytest.mark.parametrize(("args", "expected"), HEADER_FRAMES_ROWS)
def test_header_frames(args: tuple, expected: list[bytes]) -> None:
    assert header_frames(*args) == expected


HEADER_SPLIT_ROWS = [
    pytest.param("x" * n, end_stream, id=f"{n}-chars-end-stream-{end_stream}")
    for n in (0, 1, 15999, 16000, 16001, 31999, 32000, 32001, 48000, 100000)
    for end_stream in (False, True)
] + [
    pytest.param(text, True, id=name)
    for name, text in [
        ("mixed-utf8-40000", ("a\u00e9\u20ac\U0001f600" * 10000)),
        ("cjk-20000", "\u4e2d" * 20000),
        ("emoji-16001", "\U0001f600" * 16001),
    ]
]


@pytest.mark.parametrize(("text", "end_stream"), HEADER_SPLIT_ROWS)
def test_header_frames_split_invariants(text: str, end_stream: bool) -> None:
    frames = [decode(raw) for raw in header_frames(5, text, end_stream)]
    size = len(text.encode("utf-8"))
    if text.isascii():  # 16,000 characters a frame, as every Cranker peer splits
        assert len(frames) == max(1, -(-len(text) // MAX_HEADER_CHARS))
    else:  # also at most 16,000 bytes a frame: within a peer's 16 KiB message limit
        assert len(frames) >= max(1, -(-size // MAX_HEADER_CHARS))
    assert all(f.type == HEADER and f.stream_id == 5 for f in frames)
    pieces = [f.payload.decode("utf-8") for f in frames]  # each frame is valid UTF-8 on its own
    assert "".join(pieces) == text
    assert all(len(f.payload) <= MAX_HEADER_CHARS for f in frames)
    if text.isascii():
        assert [len(p) for p in pieces[:-1]] == [MAX_HEADER_CHARS] * (len(pieces) - 1)
    assert 0 <= len(pieces[-1]) <= MAX_HEADER_CHARS
    assert [f.flags for f in frames[:-1]] == [0] * (len(frames) - 1)
    assert frames[-1].flags == (END_HEADER | END_STREAM if end_stream else END_HEADER)


# --------------------------------------------------------------------------- rst_frame

RST_FRAME_ROWS = [
    pytest.param((1, 1), b"\x03\x00\x00\x00\x00\x01\x00\x00\x00\x01", id="client-gone"),
    pytest.param((2, 1011), b"\x03\x00\x00\x00\x00\x02\x00\x00\x03\xf3", id="target-failed"),
    pytest.param(
        (2, 1011, "boom"), b"\x03\x00\x00\x00\x00\x02\x00\x00\x03\xf3boom", id="with-message"
    ),
    pytest.param(
        (3, 1, "\u00e9"), b"\x03\x00\x00\x00\x00\x03\x00\x00\x00\x01\xc3\xa9", id="utf8-message"
    ),
    pytest.param((4, 0, ""), b"\x03\x00\x00\x00\x00\x04\x00\x00\x00\x00", id="code-0"),
    pytest.param(
        (MAX_STREAM_ID, -1), b"\x03\x00\x7f\xff\xff\xff\xff\xff\xff\xff", id="negative-code-signed"
    ),
]


@pytest.mark.parametrize(("args", "expected"), RST_FRAME_ROWS)
def test_rst_frame(args: tuple, expected: bytes) -> None:
    assert rst_frame(*args) == expected


# --------------------------------------------------------------------------- window_update_frame

WINDOW_UPDATE_ROWS = [
    pytest.param((1, 0), b"\x08\x00\x00\x00\x00\x01\x00\x00\x00\x00", id="zero"),
    pytest.param((1, 5), b"\x08\x00\x00\x00\x00\x01\x00\x00\x00\x05", id="five"),
    pytest.param((3, 65536), b"\x08\x00\x00\x00\x00\x03\x00\x01\x00\x00", id="64KiB"),
    pytest.param((3, 16000), b"\x08\x00\x00\x00\x00\x03\x00\x00\x3e\x80", id="16000"),
    pytest.param((1, 2**31 - 1), b"\x08\x00\x00\x00\x00\x01\x7f\xff\xff\xff", id="max-int32"),
]


@pytest.mark.parametrize(("args", "expected"), WINDOW_UPDATE_ROWS)
def test_window_update_frame(args: tuple, expected: bytes) -> None:
    assert window_update_frame(*args) == expected


@pytest.mark.parametrize("increment", [-1, -65536, -(2**31)], ids=["minus-1", "minus-64KiB", "min-int32"])
def test_window_update_frame_rejects_negative_increment(increment: int) -> None:
    with pytest.raises(LocalProtocolError):
        window_update_frame(1, increment)


# --------------------------------------------------------------------------- invalid stream ids

ENCODERS = [
    pytest.param(lambda sid: data_frame(sid, b"x"), id="data"),
    pytest.param(lambda sid: data_frame(sid, b"", True), id="data-end"),
    pytest.param(lambda sid: header_frames(sid, "GET / HTTP/1.1\n\n", True), id="header"),
    pytest.param(lambda sid: header_frames(sid, "a" * 16001, False), id="header-split"),
    pytest.param(lambda sid: header_frames(sid, "", False), id="header-empty"),
    pytest.param(lambda sid: rst_frame(sid, 1), id="rst"),
    pytest.param(lambda sid: rst_frame(sid, 1011, "msg"), id="rst-message"),
    pytest.param(lambda sid: window_update_frame(sid, 1), id="window-update"),
]

BAD_IDS = [
    pytest.param(0, id="zero"),
    pytest.param(-1, id="minus-1"),
    pytest.param(-(2**31), id="min-int32"),
    pytest.param(2**31, id="2^31"),
    pytest.param(2**32 + 1, id="2^32+1"),
]


@pytest.mark.parametrize("stream_id", BAD_IDS)
@pytest.mark.parametrize("encode", ENCODERS)
def test_encoders_reject_invalid_stream_ids(encode, stream_id: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode(stream_id)


@pytest.mark.parametrize("stream_id", [1, 2, 2**16, MAX_STREAM_ID], ids=["1", "2", "2^16", "max"])
@pytest.mark.parametrize("encode", ENCODERS)
def test_encoders_accept_valid_stream_ids(encode, stream_id: int) -> None:
    out = encode(stream_id)
    frames = out if isinstance(out, list) else [out]
    assert all(decode(raw).stream_id == stream_id for raw in frames)


# --------------------------------------------------------------------------- decode

DECODE_ROWS = [
    pytest.param(
        b"\x00\x00\x00\x00\x00\x01hello",
        Frame(type=DATA, flags=0, stream_id=1, payload=b"hello"),
        id="data",
    ),
    pytest.param(
        b"\x00\x01\x00\x00\x00\x01",
        Frame(type=DATA, flags=END_STREAM, stream_id=1, payload=b""),
        id="data-empty-end-stream",
    ),
    pytest.param(
        b"\x01\x05\x00\x00\x01\x02GET / HTTP/1.1\n\n",
        Frame(type=HEADER, flags=5, stream_id=258, payload=b"GET / HTTP/1.1\n\n"),
        id="header-flags-5",
    ),
    pytest.param(
        b"\x01\x04\x00\x00\x00\x02HTTP/1.1 200 OK\n",
        Frame(type=HEADER, flags=4, stream_id=2, payload=b"HTTP/1.1 200 OK\n"),
        id="header-flags-4",
    ),
    pytest.param(
        b"\x01\x00\x00\x00\x00\x02",
        Frame(type=HEADER, flags=0, stream_id=2, payload=b""),
        id="header-continuation-empty",
    ),
    pytest.param(
        b"\x03\x00\x00\x00\x00\x03\x00\x00\x03\xf3oops",
        Frame(type=RST_STREAM, flags=0, stream_id=3, payload=b"\x00\x00\x03\xf3oops"),
        id="rst",
    ),
    pytest.param(
        b"\x08\x00\x7f\xff\xff\xff\x00\x01\x00\x00",
        Frame(type=WINDOW_UPDATE, flags=0, stream_id=MAX_STREAM_ID, payload=b"\x00\x01\x00\x00"),
        id="window-update-max-id",
    ),
    pytest.param(
        b"\x02\x00\x00\x00\x00\x01whatever",
        Frame(type=2, flags=0, stream_id=1, payload=b"whatever"),
        id="unknown-type-2",
    ),
    pytest.param(
        b"\x09\xff\x00\x00\x00\x07",
        Frame(type=9, flags=0xFF, stream_id=7, payload=b""),
        id="unknown-type-9-all-flags",
    ),
    pytest.param(
        b"\xff\x00\x00\x00\x00\x01\x01",
        Frame(type=255, flags=0, stream_id=1, payload=b"\x01"),
        id="unknown-type-255",
    ),
    pytest.param(
        b"\x00\x00\x00\x00\x00\x00",
        Frame(type=DATA, flags=0, stream_id=0, payload=b""),
        id="id-0-decodes-caller-drops",
    ),
    pytest.param(
        b"\x00\x00\xff\xff\xff\xff",
        Frame(type=DATA, flags=0, stream_id=-1, payload=b""),
        id="id-signed-int32",
    ),
    pytest.param(
        bytearray(b"\x00\x01\x00\x00\x00\x01ab"),
        Frame(type=DATA, flags=1, stream_id=1, payload=b"ab"),
        id="bytearray-input",
    ),
    pytest.param(
        memoryview(b"\x01\x04\x00\x00\x00\x01ab"),
        Frame(type=HEADER, flags=4, stream_id=1, payload=b"ab"),
        id="memoryview-input",
    ),
]


@pytest.mark.parametrize(("message", "expected"), DECODE_ROWS)
def test_decode(message: bytes, expected: Frame) -> None:
    frame = decode(message)
    assert frame == expected
    assert type(frame.payload) is bytes


@pytest.mark.parametrize(
    "message",
    [b"", b"\x00", b"\x00\x01", b"\x00\x01\x00", b"\x00\x01\x00\x00", b"\x00\x01\x00\x00\x00"],
    ids=[f"{n}-bytes" for n in range(6)],
)
def test_decode_rejects_messages_shorter_than_6_bytes(message: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(message)


FLAG_ROWS = [
    pytest.param(0, False, False, id="0"),
    pytest.param(1, True, False, id="1-end-stream"),
    pytest.param(4, False, True, id="4-end-header"),
    pytest.param(5, True, True, id="5-both"),
    pytest.param(2, False, False, id="2-unknown-bit"),
    pytest.param(0xFF, True, True, id="ff"),
]


@pytest.mark.parametrize(("flags", "end_stream", "end_header"), FLAG_ROWS)
def test_frame_flag_properties(flags: int, end_stream: bool, end_header: bool) -> None:
    frame = decode(bytes([HEADER, flags]) + b"\x00\x00\x00\x01")
    assert (frame.end_stream, frame.end_header) == (end_stream, end_header)


ROUND_TRIP_ROWS = [
    pytest.param(data_frame(1, b"abc"), Frame(type=DATA, flags=0, stream_id=1, payload=b"abc"), id="data"),
    pytest.param(data_frame(2, b"", True), Frame(type=DATA, flags=1, stream_id=2, payload=b""), id="data-end"),
    pytest.param(
        header_frames(3, "GET /x HTTP/1.1\nHost:h\n\n", True)[0],
        Frame(type=HEADER, flags=5, stream_id=3, payload=b"GET /x HTTP/1.1\nHost:h\n\n"),
        id="header-no-body",
    ),
    pytest.param(
        header_frames(3, "POST /x HTTP/1.1\n\n", False)[0],
        Frame(type=HEADER, flags=4, stream_id=3, payload=b"POST /x HTTP/1.1\n\n"),
        id="header-with-body",
    ),
    pytest.param(
        rst_frame(4, 1011, "target down"),
        Frame(type=RST_STREAM, flags=0, stream_id=4, payload=b"\x00\x00\x03\xf3target down"),
        id="rst",
    ),
    pytest.param(
        window_update_frame(5, 1234),
        Frame(type=WINDOW_UPDATE, flags=0, stream_id=5, payload=b"\x00\x00\x04\xd2"),
        id="window-update",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), ROUND_TRIP_ROWS)
def test_round_trip(raw: bytes, expected: Frame) -> None:
    assert decode(raw) == expected


# --------------------------------------------------------------------------- rst_code

RST_CODE_ROWS = [
    pytest.param(rst_frame(1, 1), (1, ""), id="client-gone-no-message"),
    pytest.param(rst_frame(1, 1011, "target failed"), (1011, "target failed"), id="with-message"),
    pytest.param(rst_frame(1, 1011, "caf\u00e9 \u20ac"), (1011, "caf\u00e9 \u20ac"), id="utf8-message"),
    pytest.param(rst_frame(1, -5), (-5, ""), id="negative-code"),
    pytest.param(b"\x03\x00\x00\x00\x00\x01", (0, ""), id="empty-payload"),
    pytest.param(b"\x03\x00\x00\x00\x00\x01\x00\x00\x03", (0, ""), id="3-byte-payload"),
    pytest.param(b"\x03\x00\x00\x00\x00\x01\x00\x00\x03\xf3", (1011, ""), id="exactly-4-bytes"),
    pytest.param(b"\x03\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff", (1, "\ufffd"), id="bad-utf8-replaced"),
]


@pytest.mark.parametrize(("raw", "expected"), RST_CODE_ROWS)
def test_rst_code(raw: bytes, expected: tuple[int, str]) -> None:
    assert decode(raw).rst_code() == expected


# --------------------------------------------------------------------------- window_increment

WINDOW_INCREMENT_ROWS = [
    pytest.param(window_update_frame(1, 0), 0, id="zero"),
    pytest.param(window_update_frame(1, 1), 1, id="one"),
    pytest.param(window_update_frame(1, 65536), 65536, id="64KiB"),
    pytest.param(window_update_frame(1, 2**31 - 1), 2**31 - 1, id="max"),
    pytest.param(b"\x08\x00\x00\x00\x00\x01\x00\x00\x00\x07junk", 7, id="trailing-bytes-ignored"),
]


@pytest.mark.parametrize(("raw", "expected"), WINDOW_INCREMENT_ROWS)
def test_window_increment(raw: bytes, expected: int) -> None:
    assert decode(raw).window_increment() == expected


@pytest.mark.parametrize(
    "payload", [b"", b"\x00", b"\x00\x00", b"\x00\x00\x01"], ids=[f"{n}-bytes" for n in range(4)]
)
def test_window_increment_rejects_short_payload(payload: bytes) -> None:
    frame = decode(b"\x08\x00\x00\x00\x00\x01" + payload)
    with pytest.raises(RemoteProtocolError):
        frame.window_increment()


# --------------------------------------------------------------------------- HeaderAssembler


def _header(payload: bytes, last: bool, end_stream: bool = False) -> Frame:
    flags = (END_HEADER | (END_STREAM if end_stream else 0)) if last else 0
    return Frame(type=HEADER, flags=flags, stream_id=1, payload=payload)


def _split(data: bytes, parts: int) -> list[bytes]:
    """``data`` in ``parts`` consecutive pieces (the earlier ones possibly empty)."""
    step = -(-len(data) // parts) if data else 0
    pieces = [data[i * step:(i + 1) * step] for i in range(parts - 1)]
    pieces.append(data[(parts - 1) * step:])
    return pieces


ASSEMBLER_TEXTS = [
    pytest.param("GET /svc/a HTTP/1.1\nHost:h\n\n", id="ascii-request"),
    pytest.param("HTTP/1.1 200 OK\nContent-Type:text/plain\n", id="ascii-response"),
    pytest.param("GET / HTTP/1.1\nX:caf\u00e9 \u20ac \U0001f600 \u4e2d\n\n", id="multibyte-utf8"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("text", ASSEMBLER_TEXTS)
@pytest.mark.parametrize("parts", [1, 2, 3, 7], ids=lambda n: f"{n}-frames")
def test_header_assembler_split_in_frames(text: str, parts: int) -> None:
    assembler = HeaderAssembler()
    pieces = _split(text.encode("utf-8"), parts)
    results = [assembler.feed(_header(p, last=i == len(pieces) - 1)) for i, p in enumerate(pieces)]
    assert results == [None] * (len(pieces) - 1) + [text]


@pytest.mark.parametrize("text", ASSEMBLER_TEXTS)
def test_header_assembler_byte_by_byte(text: str) -> None:
    data = text.encode("utf-8")
    assembler = HeaderAssembler()
    results = [assembler.feed(_header(data[i:i + 1], last=i == len(data) - 1)) for i in range(len(data))]
    if not data:
        results = [assembler.feed(_header(b"", last=True))]
    assert results[-1] == text
    assert results[:-1] == [None] * (len(results) - 1)


MULTIBYTE_SPLIT_ROWS = [
    pytest.param([b"\xc3", b"\xa9"], "\u00e9", id="2-byte-char-over-2-frames"),
    pytest.param([b"\xe2", b"\x82", b"\xac"], "\u20ac", id="3-byte-char-over-3-frames"),
    pytest.param([b"\xf0\x9f", b"\x98\x80"], "\U0001f600", id="4-byte-char-over-2-frames"),
    pytest.param([b"\xf0", b"\x9f", b"\x98", b"\x80"], "\U0001f600", id="4-byte-char-over-4-frames"),
    pytest.param([b"X:caf\xc3", b"\xa9\n"], "X:caf\u00e9\n", id="inside-text"),
    pytest.param([b"a\xe2\x82", b"", b"\xacb"], "a\u20acb", id="with-empty-frame-between"),
]


@pytest.mark.parametrize(("payloads", "expected"), MULTIBYTE_SPLIT_ROWS)
def test_header_assembler_joins_multibyte_chars_split_across_frames(
    payloads: list[bytes], expected: str
) -> None:
    assembler = HeaderAssembler()
    results = [assembler.feed(_header(p, last=i == len(payloads) - 1)) for i, p in enumerate(payloads)]
    assert results == [None] * (len(payloads) - 1) + [expected]


@pytest.mark.parametrize("text", ["a" * 40000, "\u00e9" * 16001, "\U0001f600" * 20000, ""], ids=["ascii-40000", "2-byte-16001", "emoji-20000", "empty"])
def test_header_assembler_reassembles_header_frames(text: str) -> None:
    assembler = HeaderAssembler()
    frames = [decode(raw) for raw in header_frames(1, text, True)]
    results = [assembler.feed(f) for f in frames]
    assert results == [None] * (len(frames) - 1) + [text]


def test_header_assembler_accepts_end_stream_on_header() -> None:
    assembler = HeaderAssembler()
    assert assembler.feed(_header(b"HTTP/1.1 204 No Content\n", last=True, end_stream=True)) == (
        "HTTP/1.1 204 No Content\n"
    )


LIMIT_ROWS = [
    # (limit, payload sizes; only the last frame has END_HEADER, expected: text length or error)
    pytest.param(10, [10], 10, id="single-frame-at-limit"),
    pytest.param(10, [11], RemoteProtocolError, id="single-frame-over-limit"),
    pytest.param(10, [5, 5], 10, id="two-frames-at-limit"),
    pytest.param(10, [5, 6], RemoteProtocolError, id="two-frames-over-limit"),
    pytest.param(10, [11, 0], RemoteProtocolError, id="over-before-end-header"),
    pytest.param(10, [1] * 10, 10, id="byte-by-byte-at-limit"),
    pytest.param(10, [1] * 11, RemoteProtocolError, id="byte-by-byte-over-limit"),
    pytest.param(0, [0], 0, id="zero-limit-empty"),
    pytest.param(0, [1], RemoteProtocolError, id="zero-limit-one-byte"),
    pytest.param(1024 * 1024, [16000] * 65 + [1024 * 1024 - 16000 * 65], 1024 * 1024, id="default-limit-exact"),
    pytest.param(1024 * 1024, [16000] * 65 + [1024 * 1024 - 16000 * 65 + 1], RemoteProtocolError, id="default-limit-plus-1"),
]


@pytest.mark.parametrize(("limit", "sizes", "expected"), LIMIT_ROWS)
def test_header_assembler_size_limit(limit: int, sizes: list[int], expected: object) -> None:
    assembler = HeaderAssembler() if limit == 1024 * 1024 else HeaderAssembler(limit=limit)
    frames = [_header(b"a" * n, last=i == len(sizes) - 1) for i, n in enumerate(sizes)]
    if expected is RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            for frame in frames:
                assembler.feed(frame)
    else:
        results = [assembler.feed(frame) for frame in frames]
        assert results[:-1] == [None] * (len(frames) - 1)
        assert results[-1] == "a" * expected


INVALID_UTF8_ROWS = [
    pytest.param([b"\xff"], id="ff"),
    pytest.param([b"caf\xc3"], id="truncated-2-byte"),
    pytest.param([b"\xe2\x82"], id="truncated-3-byte"),
    pytest.param([b"\xc3", b"("], id="bad-continuation-across-frames"),
    pytest.param([b"\xc0\xaf"], id="overlong"),
    pytest.param([b"\xed\xa0\x80"], id="surrogate"),
    pytest.param([b"ok", b"\x80"], id="lone-continuation-last-frame"),
]


@pytest.mark.parametrize("payloads", INVALID_UTF8_ROWS)
def test_header_assembler_rejects_invalid_utf8(payloads: list[bytes]) -> None:
    assembler = HeaderAssembler()
    with pytest.raises(RemoteProtocolError):
        for i, payload in enumerate(payloads):
            assembler.feed(_header(payload, last=i == len(payloads) - 1))


def test_header_assembler_reuse_after_completed_header() -> None:
    assembler = HeaderAssembler(limit=10)
    assert assembler.feed(_header(b"12345", last=False)) is None
    assert assembler.feed(_header(b"67890", last=True)) == "1234567890"
    # the first header's bytes are neither repeated nor counted against the limit
    assert assembler.feed(_header(b"abcde", last=False)) is None
    assert assembler.feed(_header(b"fghij", last=True)) == "abcdefghij"
    assert assembler.feed(_header(b"x", last=True)) == "x"


def test_header_assembler_reuse_after_invalid_utf8() -> None:
    assembler = HeaderAssembler()
    with pytest.raises(RemoteProtocolError):
        assembler.feed(_header(b"\xff", last=True))
    assert assembler.feed(_header(b"ok", last=True)) == "ok"


# --------------------------------------------------------------------------- SendWindow

K = 1024

SEND_WINDOW_ROWS = [
    # steps: (action, n, expected unacked, expected paused)
    pytest.param(
        [("sent", 65536, 65536, False), ("sent", 1, 65537, True)],
        id="paused-only-above-64KiB",
    ),
    pytest.param([("sent", 65537, 65537, True)], id="one-send-over-high-water"),
    pytest.param(
        [("sent", 65536, 65536, False), ("sent", 0, 65536, False), ("acked", 0, 65536, False)],
        id="exactly-64KiB-not-paused",
    ),
    pytest.param(
        [
            ("sent", 70000, 70000, True),
            ("acked", 70000 - 16384, 16384, True),
            ("acked", 1, 16383, False),
        ],
        id="resume-only-below-16KiB",
    ),
    pytest.param(
        [
            ("sent", 100 * K, 100 * K, True),
            ("acked", 20 * K, 80 * K, True),
            ("acked", 30 * K, 50 * K, True),
            ("acked", 34 * K, 16 * K, True),
            ("acked", 1, 16 * K - 1, False),
        ],
        id="hysteresis-stays-paused-between-marks",
    ),
    pytest.param(
        [
            ("sent", 40 * K, 40 * K, False),
            ("acked", 30 * K, 10 * K, False),
            ("sent", 40 * K, 50 * K, False),
            ("sent", 14 * K, 64 * K, False),
            ("sent", 1, 64 * K + 1, True),
        ],
        id="not-paused-until-over-high-water",
    ),
    pytest.param(
        [
            ("sent", 65537, 65537, True),
            ("acked", 30000, 35537, True),
            ("sent", 10000, 45537, True),
            ("acked", 45537, 0, False),
            ("sent", 30000, 30000, False),
            ("sent", 30000, 60000, False),
        ],
        id="resumed-stays-resumed-between-marks",
    ),
    pytest.param(
        [("sent", 100, 100, False), ("acked", 1000, 0, False), ("sent", 10, 10, False)],
        id="ack-larger-than-outstanding-clamps-0",
    ),
    pytest.param(
        [("sent", 70000, 70000, True), ("acked", 10**9, 0, False)],
        id="huge-ack-clamps-and-resumes",
    ),
    pytest.param([("acked", 5, 0, False)], id="ack-with-nothing-outstanding"),
    pytest.param(
        [("acked", 100, 0, False), ("sent", 65536, 65536, False)],
        id="early-ack-does-not-create-credit",
    ),
    pytest.param(
        [
            ("sent", 65537, 65537, True),
            ("sent", 65537, 131074, True),
            ("acked", 131074 - 16383, 16383, False),
            ("sent", 49153, 65536, False),
            ("sent", 1, 65537, True),
        ],
        id="pause-resume-pause",
    ),
    pytest.param(
        [("sent", 0, 0, False), ("acked", 0, 0, False)],
        id="zero-steps",
    ),
    pytest.param(
        [("sent", 16000, 16000 * i, False) for i in range(1, 5)]
        + [("sent", 1536, 65536, False), ("sent", 1, 65537, True)],
        id="many-header-sized-sends",
    ),
]


@pytest.mark.parametrize("steps", SEND_WINDOW_ROWS)
def test_send_window(steps: list[tuple[str, int, int, bool]]) -> None:
    window = SendWindow()
    assert (window.unacked, window.paused) == (0, False)
    observed = []
    for action, n, _, _ in steps:
        getattr(window, action)(n)
        observed.append((window.unacked, window.paused))
    assert observed == [(unacked, paused) for _, _, unacked, paused in steps]


@pytest.mark.parametrize(
    ("high", "low", "steps"),
    [
        pytest.param(10, 4, [("sent", 10, 10, False), ("sent", 1, 11, True), ("acked", 7, 4, True), ("acked", 1, 3, False)], id="custom-10-4"),
        pytest.param(0, 1, [("sent", 1, 1, True), ("acked", 1, 0, False)], id="custom-0-1"),
    ],
)
def test_send_window_custom_marks(high: int, low: int, steps: list[tuple[str, int, int, bool]]) -> None:
    window = SendWindow(high=high, low=low)
    observed = []
    for action, n, _, _ in steps:
        getattr(window, action)(n)
        observed.append((window.unacked, window.paused))
    assert observed == [(unacked, paused) for _, _, unacked, paused in steps]


HEADER_COUNTED_ROWS = [
    # (header text, payload bytes counted, paused after sending every HEADER frame)
    pytest.param("GET / HTTP/1.1\n\n", 16, False, id="small-header"),
    pytest.param("a" * 65536, 65536, False, id="64KiB-ascii-at-high-water"),
    pytest.param("a" * 65537, 65537, True, id="64KiB-plus-1-ascii"),
    pytest.param("\u00e9" * 32769, 65538, True, id="utf8-counts-bytes-not-chars"),
]


@pytest.mark.parametrize(("text", "counted", "paused"), HEADER_COUNTED_ROWS)
def test_send_window_counts_header_payloads(text: str, counted: int, paused: bool) -> None:
    window = SendWindow()
    for raw in header_frames(1, text, False):
        window.sent(len(decode(raw).payload))  # payload bytes, not the 6-byte prefix
    assert (window.unacked, window.paused) == (counted, paused)
    window.acked(decode(window_update_frame(1, counted)).window_increment())
    assert (window.unacked, window.paused) == (0, False)


class _ReferenceWindow:
    """The spec, spelled out: pause above 64 KiB, resume below 16 KiB, never below zero."""

    def __init__(self) -> None:
        self.unacked = 0
        self.paused = False

    def step(self, action: str, n: int) -> tuple[int, bool]:
        if action == "sent":
            self.unacked += n
        else:
            self.unacked = max(0, self.unacked - n)
        if self.unacked > 65536:
            self.paused = True
        elif self.unacked < 16384:
            self.paused = False
        return self.unacked, self.paused


@pytest.mark.parametrize("seed", range(20), ids=lambda s: f"seed-{s}")
def test_send_window_matches_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    window, model = SendWindow(), _ReferenceWindow()
    sizes = [0, 1, 16383, 16384, 16385, 49152, 65535, 65536, 65537]
    for _ in range(500):
        action = rng.choice(["sent", "acked"])
        n = rng.choice(sizes) if rng.random() < 0.3 else rng.randint(0, 40000)
        getattr(window, action)(n)
        assert (window.unacked, window.paused) == model.step(action, n), (seed, action, n)
