"""Reading client request bodies and writing responses, with bounded memory."""
from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message
from typing import Any, Protocol

from ..errors import BadRequest, ClientGone, HeadersTooLarge, UriTooLong


class Reader(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...
    def readline(self, size: int | None = ..., /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> Any: ...


CHUNK = 64 * 1024
#: Writes smaller than this are gathered before they go to the client.
_GATHER = 16 * 1024
_MAX_CHUNK_LINE = 4096
_MAX_TRAILERS = 100
_HEX_RE = re.compile(rb"^[0-9a-fA-F]{1,16}$")
_DIGITS_RE = re.compile(r"^[0-9]{1,19}$")
#: The largest body length or chunk size accepted (what a signed 64-bit length can hold; a
#: larger one is refused before a connector sees it, not waited for).
MAX_BODY_SIZE = 2**63 - 1
#: As many header lines as the standard library's server allows.
MAX_HEADER_LINES = 100


def read_request_head(rfile: Reader, limit: int) -> bytes | None:
    """The raw bytes of one request head, up to and including its blank line; ``None`` when
    the connection ended (or the head deadline cut it) before the blank line.

    One empty line before the request line is skipped (RFC 9112, section 2.2). A request line
    over ``limit`` bytes is :class:`UriTooLong`; a head over ``limit`` bytes, or with more than
    :data:`MAX_HEADER_LINES` header lines, is :class:`HeadersTooLarge`.
    """
    line = rfile.readline(limit + 1)
    if line in (b"\r\n", b"\n"):
        line = rfile.readline(limit + 1)
    if len(line) > limit:
        raise UriTooLong(f"request line over {limit} bytes: {line[:60]!r}...")
    head = bytearray(line)
    if not line.endswith(b"\n"):
        return None
    for _ in range(MAX_HEADER_LINES + 1):
        line = rfile.readline(limit + 1 - len(head))
        head += line
        if len(head) > limit:
            raise HeadersTooLarge(f"request head over {limit} bytes")
        if not line.endswith(b"\n"):
            return None
        if line in (b"\r\n", b"\n"):
            return bytes(head)
    raise HeadersTooLarge(f"more than {MAX_HEADER_LINES} header lines")


def request_framing(headers: Message) -> int | None:
    """Body length from the request headers: ``None`` = chunked, ``0`` = no body.

    Content-Length together with Transfer-Encoding, differing or invalid Content-Length, and
    transfer codings other than ``chunked`` are refused: they are how requests get smuggled.
    """
    te = headers.get_all("Transfer-Encoding") or []
    cl = headers.get_all("Content-Length") or []
    if te and cl:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if te:
        codings = [t.strip().lower() for v in te for t in v.split(",") if t.strip()]
        if codings != ["chunked"]:
            raise BadRequest(f"unsupported Transfer-Encoding {', '.join(te)!r}")
        return None
    if cl:
        values = {v.strip() for item in cl for v in item.split(",")}
        if len(values) != 1:
            raise BadRequest("differing Content-Length values")
        value = values.pop()
        if not _DIGITS_RE.match(value) or int(value) > MAX_BODY_SIZE:
            raise BadRequest(f"invalid Content-Length {value[:40]!r}")
        return int(value)
    return 0


def _read_some(rfile: Reader, size: int) -> bytes:
    try:
        data = rfile.read1(size)
    except OSError as err:
        raise ClientGone(f"reading request body: {err}") from err
    if not data:
        raise ClientGone("client closed the connection mid-body")
    return bytes(data)


def _readline(rfile: Reader) -> bytes:
    try:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
    except OSError as err:
        raise ClientGone(f"reading request body: {err}") from err
    if not line:
        raise ClientGone("client closed the connection mid-body")
    if len(line) > _MAX_CHUNK_LINE:
        raise BadRequest("chunk line too long")
    if not line.endswith(b"\n"):
        raise ClientGone("client closed the connection mid-body")
    return line


def iter_body(rfile: Reader, length: int | None, chunk: int = CHUNK) -> Iterator[bytes]:
    """The request body as chunks of at most ``chunk`` bytes, de-chunked when chunked."""
    if length is not None:
        remaining = length
        while remaining > 0:
            data = _read_some(rfile, min(chunk, remaining))
            remaining -= len(data)
            yield data
        return
    while True:
        line = _readline(rfile).rstrip(b"\r\n")
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if not _HEX_RE.match(size_text):
            raise BadRequest(f"invalid chunk size {line[:40]!r}")
        size = int(size_text, 16)
        if size > MAX_BODY_SIZE:
            raise BadRequest(f"chunk size {size_text[:40]!r} is too large")
        if size == 0:
            break
        while size > 0:
            data = _read_some(rfile, min(chunk, size))
            size -= len(data)
            yield data
        if _readline(rfile) not in (b"\r\n", b"\n"):
            raise BadRequest("chunk data not followed by CRLF")
    for _ in range(_MAX_TRAILERS):  # trailers are read and dropped
        if _readline(rfile) in (b"\r\n", b"\n"):
            return
    raise BadRequest("too many trailer lines")


class ClientWriter:
    """Writes a response to the client; any failure becomes :class:`ClientGone`.

    Small pieces (the head, chunk framing, small bodies) are gathered and leave in one write
    when the caller runs out of data for the moment (:meth:`flush`) or at :meth:`finish`.
    """

    def __init__(self, wfile: Writer) -> None:
        self._wfile = wfile
        self._buf = bytearray()
        self.chunked = False
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        if len(data) < _GATHER:
            self._buf += data
            if len(self._buf) >= CHUNK:
                self.flush()
            return
        if self._buf:
            data = bytes(self._buf) + data
            self._buf.clear()
        self._send(data)

    def flush(self) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            self._wfile.write(data)
        except OSError as err:
            raise ClientGone(f"writing response: {err}") from err

    def write_body(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_written += len(data)
        if not self.chunked:
            self.write(data)
        elif len(data) <= 8192:
            self.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.write(b"%x\r\n" % len(data))
            self.write(data)
            self.write(b"\r\n")

    def finish(self) -> None:
        if self.chunked:
            self.write(b"0\r\n\r\n")
        self.flush()

    def frame_pending(self, data: bytes) -> list[bytes]:
        """``data`` framed, after anything gathered (which is taken): the parts for a
        non-blocking :meth:`ClientSink.try_write <crank_sync.router.sink.ClientSink.try_write>`;
        what it leaves over goes out with :meth:`write_raw` before anything else."""
        self.bytes_written += len(data)
        parts = [bytes(self._buf)] if self._buf else []
        self._buf.clear()
        if self.chunked:
            parts += [b"%x\r\n" % len(data), data, b"\r\n"]
        else:
            parts.append(data)
        return parts

    def write_raw(self, data: bytes) -> None:
        """Write bytes already framed (what :meth:`try_write_body` left over)."""
        self._send(data)
