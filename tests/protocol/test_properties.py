"""Property tests (hypothesis) for the sans-IO codecs: the v1 and v3 Cranker codecs, the
router's websocket frame decoder, and the client request head and body framing.

Two kinds of property:

* round trips: whatever valid head or frame is generated, encoding then decoding gives it back,
  however the bytes are split on the way;
* hostile input: arbitrary bytes (or text) fed to a decoder either decode or raise crank_sync's
  own protocol error (:class:`RemoteProtocolError`, :class:`FrameError`, :class:`BadRequest`,
  :class:`ClientGone`), never ``IndexError``, ``ValueError``, ``UnicodeDecodeError`` or
  ``struct.error``: the router maps only its own errors to a status or close code.

The budget (examples per test, no deadline, derandomised under CI) is the hypothesis profile
that ``tests/conftest.py`` loads.
"""
from __future__ import annotations

import email.message
import io
import itertools
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ws_frame

from crank_sync.errors import BadRequest, ClientGone, RemoteProtocolError
from crank_sync.protocol import v3
from crank_sync.protocol.http_head import ClientHead, parse_client_head
from crank_sync.protocol.v1 import (
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    ResponseHead,
    encode_request,
    encode_response_head,
    parse_request,
    parse_request_text,
    parse_response_head,
    request_text,
)
from crank_sync.router.http_io import iter_body, request_framing
from crank_sync.ws.frames import (
    FrameDecoder,
    FrameError,
    Opcode,
    Role,
)

# --------------------------------------------------------------------------- strategies

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20)
# a header value as it survives a round trip: no CR, LF or NUL anywhere (the codec refuses
# them), no space or tab at either end (the parser strips those, as HTTP says it may)
header_values = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)),
    max_size=40,
).map(lambda v: v.strip(" \t"))
header_lists = st.lists(st.tuples(tokens, header_values), max_size=8).filter(
    lambda hs: sum(n.lower() == "cookie" for n, _ in hs) < 2  # several Cookies are joined
).map(tuple)
targets = st.text(
    alphabet=st.characters(blacklist_characters=" \r\n\x00", blacklist_categories=("Cs",)),
    min_size=1, max_size=60,
)
request_heads = st.builds(
    RequestHead, method=tokens, target=targets, headers=header_lists,
    marker=st.sampled_from([MARKER_BODY_FOLLOWS, MARKER_NO_BODY]),
)
reasons = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)),
    max_size=30,
).map(str.strip)
response_heads = st.builds(ResponseHead, status=st.integers(100, 999), reason=reasons,
                           headers=header_lists)

#: text made mostly of the characters the v1 parsers branch on, so hostile input reaches past
#: the first line often, mixed with arbitrary text
V1_ALPHABET = "HTTP/1.1 200 OK GET /svc?x:_123\n\r\t \x00é"
v1_texts = st.one_of(st.text(), st.text(alphabet=V1_ALPHABET, max_size=200))
stream_ids = st.integers(1, v3.MAX_STREAM_ID)
frame_types = st.sampled_from(sorted(v3.KNOWN_TYPES))


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, duplicates ignored)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --------------------------------------------------------------------------- v1 round trips


@given(request_heads)
def test_v1_request_round_trip(head: RequestHead) -> None:
    assert parse_request(encode_request(head)) == head


@given(request_heads)
def test_v1_request_text_round_trip_as_v3_header_text(head: RequestHead) -> None:
    """The v3 HEADER text is the v1 text without the marker; END_STREAM carries the marker."""
    parsed = parse_request_text(request_text(head), has_body=head.has_body)
    assert parsed == head


@given(response_heads)
def test_v1_response_head_round_trip(head: ResponseHead) -> None:
    parsed = parse_response_head(encode_response_head(head))
    assert (parsed.status, parsed.headers) == (head.status, head.headers)
    assert parsed.reason == (head.reason or parsed.reason)  # an empty reason gets the phrase
    assert parsed.reason


@given(response_heads, st.sampled_from(["\n", "\r\n"]), st.sampled_from([":", ": "]))
def test_v1_response_head_round_trip_lenient_forms(head: ResponseHead, eol: str,
                                                   sep: str) -> None:
    """What other connectors send: CRLF line ends and a space after the colon."""
    lines = [f"HTTP/1.1 {head.status} {head.reason or 'OK'}"]
    lines += [f"{name}{sep}{value}" for name, value in head.headers]
    parsed = parse_response_head(eol.join(lines) + eol)
    assert (parsed.status, parsed.headers) == (head.status, head.headers)


# --------------------------------------------------------------------------- v1 hostile input


@given(v1_texts)
def test_v1_parse_request_raises_only_protocol_errors(text: str) -> None:
    try:
        parse_request(text)
    except RemoteProtocolError:
        pass


@given(v1_texts, st.booleans())
def test_v1_parse_request_text_raises_only_protocol_errors(text: str, has_body: bool) -> None:
    try:
        parse_request_text(text, has_body=has_body)
    except RemoteProtocolError:
        pass


@given(v1_texts)
def test_v1_parse_response_head_raises_only_protocol_errors(text: str) -> None:
    try:
        head = parse_response_head(text)
    except RemoteProtocolError:
        return
    assert 100 <= head.status <= 999


# --------------------------------------------------------------------------- v3 round trips


@given(stream_ids, st.binary(max_size=2000), st.booleans())
def test_v3_data_frame_round_trip(stream_id: int, data: bytes, end: bool) -> None:
    frame = v3.decode(v3.data_frame(stream_id, data, end_stream=end))
    assert (frame.type, frame.stream_id, frame.payload, frame.end_stream) == (
        v3.DATA, stream_id, data, end)


@given(stream_ids, st.integers(-(2**31), 2**31 - 1), st.text(max_size=100))
def test_v3_rst_stream_round_trip(stream_id: int, code: int, message: str) -> None:
    frame = v3.decode(v3.rst_frame(stream_id, code, message))
    assert (frame.type, frame.stream_id) == (v3.RST_STREAM, stream_id)
    assert frame.rst_code() == (code, message)


@given(stream_ids, st.integers(0, 2**31 - 1))
def test_v3_window_update_round_trip(stream_id: int, increment: int) -> None:
    frame = v3.decode(v3.window_update_frame(stream_id, increment))
    assert (frame.type, frame.stream_id, frame.window_increment()) == (
        v3.WINDOW_UPDATE, stream_id, increment)


# header texts either side of the 16,000-character split, built by repetition so that
# hypothesis need not draw every character of a 40,000-character string
long_texts = st.tuples(st.text(min_size=1, max_size=30), st.integers(1, 40_000)).map(
    lambda t: (t[0] * (t[1] // len(t[0]) + 1))[:t[1]])
header_texts = st.one_of(st.text(max_size=300), long_texts)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(stream_ids, header_texts, st.booleans())
def test_v3_header_frames_reassemble(stream_id: int, text: str, end_stream: bool) -> None:
    frames = [v3.decode(m) for m in v3.header_frames(stream_id, text, end_stream)]
    assert all(f.type == v3.HEADER and f.stream_id == stream_id for f in frames)
    assert [f.end_header for f in frames] == [False] * (len(frames) - 1) + [True]
    assert [f.end_stream for f in frames] == [False] * (len(frames) - 1) + [end_stream]
    assert all(len(f.payload.decode("utf-8")) <= v3.MAX_HEADER_CHARS for f in frames)
    assembler = v3.HeaderAssembler()
    results = [assembler.feed(f) for f in frames]
    assert results == [None] * (len(frames) - 1) + [text]


@given(stream_ids, st.text(max_size=500), st.lists(st.integers(0, 2000), max_size=10))
def test_v3_header_text_split_anywhere_reassembles(stream_id: int, text: str,
                                                   cuts: list[int]) -> None:
    """HEADER payloads cut at arbitrary byte offsets, inside a UTF-8 sequence too, join back
    into the text: the assembler decodes only the whole."""
    data = text.encode("utf-8")
    pieces = splits(data, cuts)
    assembler = v3.HeaderAssembler()
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        message = bytes([v3.HEADER, v3.END_HEADER if last else 0]) + stream_id.to_bytes(4, "big")
        result = assembler.feed(v3.decode(message + piece))
        assert result == (data.decode("utf-8") if last else None)


# --------------------------------------------------------------------------- v3 hostile input


@given(st.binary(max_size=200))
def test_v3_decode_raises_only_protocol_errors(message: bytes) -> None:
    try:
        frame = v3.decode(message)
    except RemoteProtocolError:
        assert len(message) < 6
        return
    assert frame.payload == message[6:]
    frame.rst_code()  # any payload gives a code and a message
    try:
        frame.window_increment()
    except RemoteProtocolError:
        assert len(frame.payload) < 4


@given(st.lists(st.tuples(frame_types, st.integers(0, 255), st.binary(max_size=300)),
                max_size=20))
def test_v3_header_assembler_raises_only_protocol_errors(
        frames: list[tuple[int, int, bytes]]) -> None:
    assembler = v3.HeaderAssembler(limit=1000)
    for kind, flags, payload in frames:
        try:
            assembler.feed(v3.Frame(type=kind, flags=flags, stream_id=1, payload=payload))
        except RemoteProtocolError:
            pass


# --------------------------------------------------------------------------- websocket frames

keys = st.binary(min_size=4, max_size=4)
data_messages = st.tuples(st.sampled_from([Opcode.TEXT, Opcode.BINARY]), st.binary(max_size=3000),
                          st.integers(1, 4))  # opcode, payload, fragments
control_frames = st.tuples(st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE]),
                           st.binary(max_size=125), st.just(1))


@given(st.lists(st.one_of(data_messages, control_frames), max_size=12), keys,
       st.lists(st.integers(0, 50_000), max_size=12))
def test_client_frames_round_trip_however_split(
        messages: list[tuple[int, bytes, int]], key: bytes, cuts: list[int]) -> None:
    wire = bytearray()
    for opcode, payload, fragments in messages:
        size = -(-len(payload) // fragments) or 1
        parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for index, part in enumerate(parts):
            first, last = index == 0, index == len(parts) - 1
            wire += ws_frame(opcode if first else 0, part, fin=last, mask=key)
    decoder = FrameDecoder(Role.SERVER, 1 << 20)
    out = []
    for piece in splits(bytes(wire), cuts):
        decoder.feed(piece)
        out.extend(decoder.messages())
    assert out == [(opcode, payload) for opcode, payload, _ in messages]
    assert decoder.buffered == 0


@given(st.lists(st.binary(max_size=300), max_size=8), st.sampled_from([None, 100, 10_000]))
def test_client_frame_decoder_raises_only_frame_errors(pieces: list[bytes],
                                                       limit: int | None) -> None:
    decoder = FrameDecoder(Role.SERVER, limit)
    for piece in pieces:
        decoder.feed(piece)
        try:
            for opcode, payload in decoder.messages():
                assert opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG)
                assert isinstance(payload, bytes)
        except FrameError as err:
            assert err.code in (1002, 1009)
            return


@given(st.lists(st.tuples(st.integers(0, 15), st.booleans(), st.booleans(),
                          st.binary(max_size=200)), max_size=10), keys)
def test_client_frame_decoder_on_well_formed_heads_raises_only_frame_errors(
        frames: list[tuple[int, bool, bool, bytes]], key: bytes) -> None:
    """Frames with valid heads but any opcode, FIN and mask bit: past the first bytes, where
    arbitrary bytes seldom reach."""
    wire = b"".join(ws_frame(op, payload, fin=fin, mask=key if masked else None)
                    for op, fin, masked, payload in frames)
    decoder = FrameDecoder(Role.SERVER, 10_000)
    decoder.feed(wire)
    try:
        list(decoder.messages())
    except FrameError as err:
        assert err.code in (1002, 1009)


# --------------------------------------------------------------------------- client body framing


def chunked_wire(pieces: list[bytes], extensions: list[str], trailers: list[str]) -> bytes:
    out = bytearray()
    for index, piece in enumerate(pieces):
        ext = extensions[index % len(extensions)] if extensions else ""
        out += b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece)
    out += b"0\r\n" + b"".join(t.encode() + b"\r\n" for t in trailers) + b"\r\n"
    return bytes(out)


@given(st.lists(st.binary(min_size=1, max_size=500), max_size=10),
       st.lists(st.sampled_from(["", ";a=1", ";name", ' ;q="x y"']), max_size=3),
       st.lists(st.sampled_from(["X-T: 1", "Digest: abc"]), max_size=3),
       st.integers(1, 700), st.sampled_from([1, 7, 8192]))
def test_chunked_body_round_trip(pieces: list[bytes], extensions: list[str],
                                 trailers: list[str], chunk: int, buffer_size: int) -> None:
    wire = chunked_wire(pieces, extensions, trailers)
    rfile = io.BufferedReader(io.BytesIO(wire + b"GET /next"), buffer_size=buffer_size)
    body = list(iter_body(rfile, None, chunk=chunk))
    assert b"".join(body) == b"".join(pieces)
    assert all(0 < len(c) <= chunk for c in body)
    assert rfile.read() == b"GET /next"  # the next request on the connection is left unread


CHUNKED_ALPHABET = b"0123456789abcdefABCDEF;\r\n \t=xz"
chunked_bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(list(CHUNKED_ALPHABET)), max_size=300).map(bytes),
    st.lists(st.sampled_from([b"5\r\n", b"hello", b"\r\n", b"0\r\n", b"ffffffffffffffff\r\n",
                              b";ext", b"X: y\r\n", b"\n", b"1" * 20, b"g\r\n"]),
             max_size=20).map(b"".join),
)


@given(chunked_bodies, st.integers(1, 100))
def test_chunked_body_raises_only_bad_request_or_client_gone(wire: bytes, chunk: int) -> None:
    rfile = io.BufferedReader(io.BytesIO(wire))
    try:
        for data in iter_body(rfile, None, chunk=chunk):
            assert 0 < len(data) <= chunk
    except (BadRequest, ClientGone):
        pass


framing_values = st.one_of(st.text(max_size=30),
                           st.sampled_from(["chunked", "Chunked", "gzip, chunked", "5", "5, 5",
                                            "5, 6", "-1", "0x10", "1e3", " 7 ", "١٢"]))


@given(st.lists(st.tuples(st.sampled_from(["Content-Length", "Transfer-Encoding"]),
                          framing_values), max_size=4))
def test_request_framing_raises_only_bad_request(fields: list[tuple[str, str]]) -> None:
    headers = email.message.Message()
    for name, value in fields:
        headers[name] = value
    try:
        length = request_framing(headers)
    except BadRequest:
        return
    assert length is None or length >= 0


# --------------------------------------------------------------------------- the request head

#: the router's strict head parser: one whole head in, a ClientHead or a protocol error out
HEAD_PARSER: Callable[[bytes], ClientHead] = parse_client_head
HEAD_ERRORS = (RemoteProtocolError,)  # BadRequest and HttpVersionNotSupported included

HEAD_ALPHABET = b"GET POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding:, \t\x00.%2e"
heads = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(list(HEAD_ALPHABET)), max_size=300).map(bytes),
    st.lists(st.sampled_from([b"GET /svc/x HTTP/1.1\r\n", b"Host: h\r\n", b"Content-Length: 3\r\n",
                              b"Content-Length: x\r\n", b"Transfer-Encoding: chunked\r\n",
                              b" folded\r\n", b"\r\n", b"\n", b"X:\xff\xfe\r\n", b"NoColon\r\n",
                              b"GET /a/%2E%2e/b HTTP/1.0\n", b"X: a\rb\r\n", b"HTTP/2.0\r\n"]),
             max_size=12).map(b"".join),
)


@given(heads)
def test_head_parser_raises_only_protocol_errors(head: bytes) -> None:
    """Arbitrary bytes as a request head: a head, or one of crank_sync's protocol errors."""
    try:
        HEAD_PARSER(head)
    except HEAD_ERRORS:
        pass


path_segments = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%;=&", min_size=1,
                        max_size=10).filter(
    # dot segments, with or without path parameters (".;x"), are refused by design
    lambda seg: seg.split(";", 1)[0].strip(".") != "" and "%" not in seg)
field_names = tokens.filter(lambda n: n.lower() != "host")
field_values = st.text(alphabet=TOKEN_CHARS + " /:;=,\t\x80\xe9", max_size=30).map(
    lambda v: v.strip(" \t"))


@given(tokens, st.lists(path_segments, max_size=5), st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
       st.lists(st.tuples(field_names, field_values), max_size=8),
       st.sampled_from(["\r\n", "\n"]), st.sampled_from([":", ": ", ":\t"]))
def test_head_parser_round_trip(method: str, segments: list[str], version: str,
                                fields: list[tuple[str, str]], eol: str, colon: str) -> None:
    target = "/" + "/".join(segments)
    fields = [("Host", "example.com"), *fields]
    wire = (f"{method} {target} {version}{eol}" +
            "".join(f"{n}{colon}{v}{eol}" for n, v in fields) + eol).encode("latin-1")
    assert HEAD_PARSER(wire) == ClientHead(method=method, target=target, version=version,
                                           headers=tuple(fields))
