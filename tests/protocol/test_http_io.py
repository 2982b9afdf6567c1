"""Request framing, body de-chunking and response writing, on in-memory streams only."""
from __future__ import annotations

import http.client
import io
import random
from typing import BinaryIO, cast

import pytest

from crank_sync.errors import BadRequest, ClientGone, HeadersTooLarge, UriTooLong
from crank_sync.router.http_io import (
    MAX_BODY_SIZE,
    ClientWriter,
    iter_body,
    read_request_head,
    request_framing,
)


def parse_headers(raw: bytes) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO(raw + b"\r\n"))


def reader(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(data))


class Trickle(io.RawIOBase):
    """A raw stream that hands out its bytes in the given piece sizes, like a socket might."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._sizes = sizes
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._pos >= len(self._data):
            return 0
        size = self._sizes.pop(0) if self._sizes else 1
        size = min(size, len(buffer), len(self._data) - self._pos)
        buffer[:size] = self._data[self._pos : self._pos + size]
        self._pos += size
        return size


# --------------------------------------------------------------------------- request_framing

FRAMING_ROWS = [
    pytest.param(b"Host: h\r\n", 0, id="no-body"),
    pytest.param(b"Content-Length: 0\r\n", 0, id="cl-zero"),
    pytest.param(b"Content-Length: 42\r\n", 42, id="cl"),
    pytest.param(b"Content-Length:  42 \r\n", 42, id="cl-padded"),
    pytest.param(b"Content-Length: 007\r\n", 7, id="cl-leading-zeros"),
    pytest.param(b"Content-Length: 5\r\nContent-Length: 5\r\n", 5, id="cl-repeated-same"),
    pytest.param(b"Content-Length: 5, 5\r\n", 5, id="cl-list-same"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", None, id="chunked"),
    pytest.param(b"Transfer-Encoding: Chunked\r\n", None, id="chunked-case"),
    pytest.param(b"Transfer-Encoding:  chunked \r\n", None, id="chunked-padded"),
]


@pytest.mark.parametrize(("raw", "expected"), FRAMING_ROWS)
def test_request_framing(raw: bytes, expected: int | None) -> None:
    assert request_framing(parse_headers(raw)) == expected


FRAMING_REJECTIONS = [
    pytest.param(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", id="cl-and-te"),
    pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", id="te-and-cl-zero"),
    pytest.param(b"Content-Length: 5\r\nContent-Length: 6\r\n", id="cl-differing"),
    pytest.param(b"Content-Length: 5, 6\r\n", id="cl-list-differing"),
    pytest.param(b"Content-Length: -1\r\n", id="cl-negative"),
    pytest.param(b"Content-Length: +5\r\n", id="cl-plus"),
    pytest.param(b"Content-Length: 1e3\r\n", id="cl-exponent"),
    pytest.param(b"Content-Length: 0x10\r\n", id="cl-hex"),
    pytest.param(b"Content-Length: 1.0\r\n", id="cl-decimal"),
    pytest.param(b"Content-Length:  \r\n", id="cl-blank"),
    pytest.param(b"Content-Length: 5 5\r\n", id="cl-space-inside"),
    pytest.param(b"Content-Length: 99999999999999999999\r\n", id="cl-huge"),
    pytest.param(b"Content-Length: \xd9\xa5\r\n", id="cl-arabic-indic-digit"),
    pytest.param(b"Transfer-Encoding: gzip, chunked\r\n", id="te-gzip-chunked"),
    pytest.param(b"Transfer-Encoding: chunked, gzip\r\n", id="te-chunked-gzip"),
    pytest.param(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", id="te-two-headers"),
    pytest.param(b"Transfer-Encoding: identity\r\n", id="te-identity"),
    pytest.param(b"Transfer-Encoding: chunked, chunked\r\n", id="te-chunked-twice"),
    pytest.param(b"Transfer-Encoding: xchunked\r\n", id="te-xchunked"),
]


@pytest.mark.parametrize("raw", FRAMING_REJECTIONS)
def test_request_framing_rejects(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        request_framing(parse_headers(raw))


def test_request_framing_bound() -> None:
    assert request_framing(parse_headers(b"Content-Length: %d\r\n" % MAX_BODY_SIZE)) == (
        MAX_BODY_SIZE)
    with pytest.raises(BadRequest):
        request_framing(parse_headers(b"Content-Length: %d\r\n" % (MAX_BODY_SIZE + 1)))


# --------------------------------------------------------------------------- read_request_head

HEAD = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n"

READ_HEAD_ROWS = [
    pytest.param(HEAD + b"5\r\nhello", HEAD, id="stops-at-blank-line"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", b"GET / HTTP/1.1\nHost: a\n\n", id="bare-lf"),
    pytest.param(b"\r\n" + HEAD, HEAD, id="one-empty-line-skipped"),
    pytest.param(b"GET / HTTP/1.1\r\nX-A: a\rB: 1\r\n\r\n",
                 b"GET / HTTP/1.1\r\nX-A: a\rB: 1\r\n\r\n", id="bare-cr-left-to-the-parser"),
    pytest.param(b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\r\n\r\n",
                 b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\r\n\r\n", id="cr-cr-lf-is-not-the-end"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 100 + b"\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 100 + b"\r\n", id="100-header-lines"),
    pytest.param(b"GET / HTTP/1.1\r\nX: " + b"v" * (1024 - 23) + b"\r\n\r\n",
                 b"GET / HTTP/1.1\r\nX: " + b"v" * (1024 - 23) + b"\r\n\r\n", id="at-the-limit"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Cut: shor", None, id="cut-in-a-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", None, id="cut-before-blank-line"),
    pytest.param(b"GET / HTT", None, id="cut-in-request-line"),
]


@pytest.mark.parametrize(("wire", "expected"), READ_HEAD_ROWS)
def test_read_request_head(wire: bytes, expected: bytes | None) -> None:
    assert read_request_head(reader(wire), 1024) == expected


READ_HEAD_TOO_BIG = [
    pytest.param(b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", UriTooLong, id="request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nX: " + b"v" * 1100 + b"\r\n\r\n", HeadersTooLarge,
                 id="one-header"),
    pytest.param(b"GET / HTTP/1.1\r\nX: " + b"v" * (1024 - 22) + b"\r\n\r\n", HeadersTooLarge,
                 id="one-byte-over"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 101 + b"\r\n", HeadersTooLarge,
                 id="101-header-lines"),
]


@pytest.mark.parametrize(("wire", "error"), READ_HEAD_TOO_BIG)
def test_read_request_head_too_big(wire: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_request_head(reader(wire), 1024)


# --------------------------------------------------------------------------- iter_body

BODY_ROWS = [
    pytest.param(b"hello", 5, b"hello", id="cl"),
    pytest.param(b"", 0, b"", id="cl-zero"),
    pytest.param(b"x" * 200_000, 200_000, b"x" * 200_000, id="cl-large"),
    pytest.param(b"5\r\nhello\r\n0\r\n\r\n", None, b"hello", id="chunked-one"),
    pytest.param(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", None, b"hello world", id="chunked-two"),
    pytest.param(b"0\r\n\r\n", None, b"", id="chunked-empty"),
    pytest.param(b"A\r\n0123456789\r\n0\r\n\r\n", None, b"0123456789", id="chunked-upper-hex"),
    pytest.param(b"a\r\n0123456789\r\n0\r\n\r\n", None, b"0123456789", id="chunked-lower-hex"),
    pytest.param(b"005\r\nhello\r\n000\r\n\r\n", None, b"hello", id="chunked-leading-zeros"),
    pytest.param(
        b"5;name=value\r\nhello\r\n6;a;b=\"q\"\r\n world\r\n0;last\r\n\r\n",
        None,
        b"hello world",
        id="chunk-extensions",
    ),
    pytest.param(b"5 ;ext\r\nhello\r\n0\r\n\r\n", None, b"hello", id="chunk-ext-with-space"),
    pytest.param(
        b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
        None,
        b"hello",
        id="trailers-dropped",
    ),
    pytest.param(b"5\nhello\n0\n\n", None, b"hello", id="bare-lf-tolerated"),
    pytest.param(b"3\r\n\r\n\r\r\n0\r\n\r\n", None, b"\r\n\r", id="crlf-inside-data"),
    pytest.param(
        b"%x\r\n%b\r\n0\r\n\r\n" % (100_000, b"y" * 100_000),
        None,
        b"y" * 100_000,
        id="chunk-larger-than-read-size",
    ),
]


@pytest.mark.parametrize(("wire", "length", "expected"), BODY_ROWS)
def test_iter_body(wire: bytes, length: int | None, expected: bytes) -> None:
    assert b"".join(iter_body(reader(wire), length)) == expected


@pytest.mark.parametrize(
    ("wire", "length"),
    [
        pytest.param(b"hello" + b"GET / HTTP/1.1\r\n\r\n", 5, id="cl"),
        pytest.param(b"5\r\nhello\r\n0\r\n\r\n" + b"GET / HTTP/1.1\r\n\r\n", None, id="chunked"),
        pytest.param(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" + b"GET / HTTP/1.1\r\n\r\n", None, id="trailers"),
    ],
)
def test_iter_body_leaves_the_next_request_unread(wire: bytes, length: int | None) -> None:
    rfile = reader(wire)
    assert b"".join(iter_body(rfile, length)) == b"hello"
    assert rfile.read() == b"GET / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize(
    ("wire", "length"),
    [(b"z" * 100, 100), (b"40\r\n" + b"z" * 64 + b"\r\n24\r\n" + b"z" * 36 + b"\r\n0\r\n\r\n", None)],
    ids=["cl", "chunked"],
)
def test_iter_body_respects_chunk_size(wire: bytes, length: int | None, chunk: int) -> None:
    pieces = list(iter_body(reader(wire), length, chunk=chunk))
    assert b"".join(pieces) == b"z" * 100
    assert all(0 < len(p) <= chunk for p in pieces)


BODY_BAD_REQUEST = [
    pytest.param(b"x\r\nhello\r\n0\r\n\r\n", id="size-not-hex"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", id="size-0x-prefix"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="size-negative"),
    pytest.param(b"+5\r\nhello\r\n0\r\n\r\n", id="size-plus"),
    pytest.param(b"\r\nhello\r\n0\r\n\r\n", id="size-empty"),
    pytest.param(b";ext\r\nhello\r\n0\r\n\r\n", id="size-only-extension"),
    pytest.param(b"5 5\r\nhello\r\n0\r\n\r\n", id="size-space-inside"),
    pytest.param(b"1" * 17 + b"\r\n", id="size-too-many-digits"),
    pytest.param(b"f" * 16 + b"\r\nhello\r\n0\r\n\r\n", id="size-over-2-63"),
    pytest.param(b"8000000000000000\r\nhello\r\n0\r\n\r\n", id="size-2-63"),
    pytest.param(b"5\r\nhello\r\n" + b"f" * 16 + b"\r\nhello\r\n0\r\n\r\n",
                 id="second-size-over-2-63"),
    pytest.param(b"5" + b" " * 5000 + b"\r\nhello\r\n0\r\n\r\n", id="size-line-too-long"),
    pytest.param(b"5\r\nhelloXX\r\n0\r\n\r\n", id="data-longer-than-size"),
    pytest.param(b"5\r\nhello0\r\n\r\n", id="missing-crlf-after-data"),
    pytest.param(b"5\r\nhello \r\n0\r\n\r\n", id="junk-before-crlf"),
    pytest.param(b"0\r\n" + b"X-T: 1\r\n" * 200 + b"\r\n", id="too-many-trailers"),
]


@pytest.mark.parametrize("wire", BODY_BAD_REQUEST)
def test_iter_body_rejects(wire: bytes) -> None:
    with pytest.raises(BadRequest):
        b"".join(iter_body(reader(wire), None))


BODY_TRUNCATED = [
    pytest.param(b"hel", 5, id="cl-short"),
    pytest.param(b"", 5, id="cl-nothing"),
    pytest.param(b"", None, id="chunked-nothing"),
    pytest.param(b"5\r\nhel", None, id="chunked-mid-data"),
    pytest.param(b"5\r\nhello", None, id="chunked-before-data-crlf"),
    pytest.param(b"5\r\nhello\r\n", None, id="chunked-before-next-size"),
    pytest.param(b"5\r\nhello\r\n0\r\n", None, id="chunked-before-final-crlf"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T: 1\r\n", None, id="chunked-in-trailers"),
    # The client went away in the middle of a line: still a disconnect, not a malformed request.
    pytest.param(b"5\r\nhello\r\n0", None, id="chunked-mid-size-line"),
    pytest.param(b"5\r\nhello\r", None, id="chunked-mid-data-crlf"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-T: 1", None, id="chunked-mid-trailer-line"),
]


@pytest.mark.parametrize(("wire", "length"), BODY_TRUNCATED)
def test_iter_body_truncated_is_client_gone(wire: bytes, length: int | None) -> None:
    with pytest.raises(ClientGone):
        b"".join(iter_body(reader(wire), length))


class BrokenReader(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        raise ConnectionResetError("reset by peer")


@pytest.mark.parametrize("length", [5, None], ids=["cl", "chunked"])
def test_iter_body_read_error_is_client_gone(length: int | None) -> None:
    with pytest.raises(ClientGone):
        b"".join(iter_body(io.BufferedReader(BrokenReader()), length))


# --------------------------------------------------------------------------- property-style

def chunked(pieces: list[bytes], rng: random.Random) -> bytes:
    out = bytearray()
    for piece in pieces:
        ext = b";e=%d" % rng.randrange(100) if rng.random() < 0.3 else b""
        size = b"%x" % len(piece) if rng.random() < 0.5 else b"%X" % len(piece)
        out += size + ext + b"\r\n" + piece + b"\r\n"
    out += b"0\r\n"
    if rng.random() < 0.5:
        out += b"X-Trailer: t\r\n"
    return bytes(out + b"\r\n")


def random_splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(0, 12))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize("seed", range(60))
def test_random_chunk_splits_yield_the_same_body(seed: int) -> None:
    rng = random.Random(seed)
    body = rng.randbytes(rng.randrange(1, 3000))
    wire = chunked(random_splits(body, rng), rng)
    assert b"".join(iter_body(reader(wire), None)) == body


@pytest.mark.parametrize("seed", range(60))
def test_random_delivery_splits_yield_the_same_body(seed: int) -> None:
    """The same wire bytes, delivered by the stream in random pieces, de-chunk identically."""
    rng = random.Random(seed)
    body = rng.randbytes(rng.randrange(1, 3000))
    wire = chunked(random_splits(body, rng), rng)
    sizes = [rng.randrange(1, 20) for _ in range(len(wire))]
    rfile = io.BufferedReader(Trickle(wire + b"NEXT", sizes), buffer_size=rng.choice([1, 2, 8, 8192]))
    assert b"".join(iter_body(rfile, None, chunk=rng.randrange(1, 500))) == body
    assert rfile.read() == b"NEXT"


@pytest.mark.parametrize("seed", range(20))
def test_random_delivery_splits_with_content_length(seed: int) -> None:
    rng = random.Random(seed)
    body = rng.randbytes(rng.randrange(0, 3000))
    sizes = [rng.randrange(1, 50) for _ in range(len(body))]
    rfile = io.BufferedReader(Trickle(body + b"NEXT", sizes), buffer_size=rng.choice([1, 8, 8192]))
    assert b"".join(iter_body(rfile, len(body), chunk=rng.randrange(1, 500))) == body
    assert rfile.read() == b"NEXT"


# --------------------------------------------------------------------------- ClientWriter

WRITER_ROWS = [
    pytest.param(False, [b"hello", b" world"], b"hello world", id="identity"),
    pytest.param(False, [b"", b"a", b""], b"a", id="identity-empty-writes-ignored"),
    pytest.param(True, [b"hello"], b"5\r\nhello\r\n0\r\n\r\n", id="chunked-one"),
    pytest.param(True, [b"hello", b" world"], b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", id="chunked-two"),
    pytest.param(True, [b"", b"abc", b""], b"3\r\nabc\r\n0\r\n\r\n", id="chunked-empty-not-terminator"),
    pytest.param(True, [], b"0\r\n\r\n", id="chunked-no-body"),
    pytest.param(True, [b"x" * 255], b"ff\r\n" + b"x" * 255 + b"\r\n0\r\n\r\n", id="chunked-hex-size"),
    pytest.param(True, [b"x" * 8192], b"2000\r\n" + b"x" * 8192 + b"\r\n0\r\n\r\n", id="chunked-8k"),
    pytest.param(True, [b"x" * 8193], b"2001\r\n" + b"x" * 8193 + b"\r\n0\r\n\r\n", id="chunked-large"),
]


@pytest.mark.parametrize(("chunked_mode", "writes", "expected"), WRITER_ROWS)
def test_client_writer(chunked_mode: bool, writes: list[bytes], expected: bytes) -> None:
    out = io.BytesIO()
    writer = ClientWriter(out)
    writer.chunked = chunked_mode
    for data in writes:
        writer.write_body(data)
    writer.finish()
    assert out.getvalue() == expected
    assert writer.bytes_written == sum(len(d) for d in writes)


@pytest.mark.parametrize("seed", range(20))
def test_client_writer_output_de_chunks_to_the_body(seed: int) -> None:
    rng = random.Random(seed)
    body = rng.randbytes(rng.randrange(0, 40_000))
    out = io.BytesIO()
    writer = ClientWriter(out)
    writer.chunked = True
    for piece in random_splits(body, rng) if body else []:
        writer.write_body(piece)
    writer.finish()
    assert b"".join(iter_body(reader(out.getvalue()), None)) == body


class BrokenWriter(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        raise BrokenPipeError("broken pipe")


@pytest.mark.parametrize("chunked_mode", [False, True])
def test_client_writer_write_error_is_client_gone(chunked_mode: bool) -> None:
    writer = ClientWriter(cast(BinaryIO, BrokenWriter()))
    writer.chunked = chunked_mode
    writer.write_body(b"data")  # small writes are gathered: the failure shows on flush
    with pytest.raises(ClientGone):
        writer.finish()


@pytest.mark.parametrize("chunked_mode", [False, True])
def test_client_writer_large_write_error_is_client_gone_at_once(chunked_mode: bool) -> None:
    writer = ClientWriter(cast(BinaryIO, BrokenWriter()))
    writer.chunked = chunked_mode
    with pytest.raises(ClientGone):
        writer.write_body(b"x" * 65536)
