"""WSGI plumbing for the in-process target: the streaming ``wsgi.input``, ``wsgi.errors``
and ``wsgi.file_wrapper``."""
from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from typing import IO

from ..errors import ClientDisconnected

app_log = logging.getLogger("crank_sync.connector.wsgi.app")  # wsgi.errors


class RequestInput:
    """``wsgi.input``: the request body, pulled from the tunnel only as the application reads.

    At most one tunnel chunk (plus what a ``readline`` is looking through) is held at a time.
    When the tunnel fails, the application sees :class:`ClientDisconnected` (an ``OSError``, as
    frameworks expect from a socket), and :attr:`error` keeps the original for the worker.
    """

    def __init__(self, body: Iterable[bytes] | None) -> None:
        self._chunks: Iterator[bytes] = iter(body) if body is not None else iter(())
        self._buf = bytearray()
        self._eof = body is None
        self.error: BaseException | None = None
        self.bytes_read = 0

    def _next_chunk(self) -> bytes:
        """The tunnel's next non-empty chunk, or b"" at the end of the body."""
        while not self._eof:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                return b""
            except Exception as err:
                self._eof = True
                self.error = err
                raise ClientDisconnected(f"request body could not be read: {err!r}") from err
            if chunk:
                self.bytes_read += len(chunk)
                return chunk
        if self.error is not None:
            raise ClientDisconnected("request body could not be read") from self.error
        return b""

    def _fill(self) -> bool:
        """Pull one more chunk into the buffer; False at the end of the body."""
        chunk = self._next_chunk()
        if chunk:
            self._buf += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        if n >= len(self._buf):
            data = bytes(self._buf)
            self._buf.clear()
            return data
        data = bytes(memoryview(self._buf)[:n])
        del self._buf[:n]
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end); everything left when ``size`` < 0."""
        want = size if size is not None and size >= 0 else None
        if want is not None and len(self._buf) >= want:
            return self._take(want)
        # Chunks go into a BytesIO as they come: its getvalue() hands over its buffer without a
        # copy, so a large read holds the body about once (a join would hold it twice).
        first = self._take(len(self._buf))
        chunk = self._next_chunk() if want is None or len(first) < want else b""
        if not chunk:
            return first
        if not first and want is not None and len(chunk) >= want:  # one chunk: no copy
            self._buf += memoryview(chunk)[want:]
            return bytes(chunk[:want])
        out = io.BytesIO(first)
        out.seek(0, io.SEEK_END)
        have = len(first)
        while chunk:
            if want is not None and have + len(chunk) >= want:
                cut = want - have
                out.write(memoryview(chunk)[:cut])
                self._buf += memoryview(chunk)[cut:]
                break
            out.write(chunk)
            have += len(chunk)
            chunk = self._next_chunk()
        return out.getvalue()

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end != -1:
                n = end + 1
                return self._take(n if limit is None else min(n, limit))
            if limit is not None and len(self._buf) >= limit:
                return self._take(limit)
            start = len(self._buf)
            if not self._fill():
                return self._take(len(self._buf) if limit is None else limit)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self) -> int:
        """Read and discard the rest of the body; returns how many bytes that was."""
        dropped = len(self._buf)
        self._buf.clear()
        while self._fill():
            dropped += len(self._buf)
            self._buf.clear()
        return dropped


class _ErrorStream:
    """``wsgi.errors``: text the application writes goes to the ``crank_sync...app`` logger."""

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            app_log.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            app_log.error("%s", self._pending)
            self._pending = ""


class FileWrapper:
    """``wsgi.file_wrapper``: a file served in ``blksize`` blocks; ``read1`` reads it directly."""

    def __init__(self, filelike: IO[bytes], blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.filelike.read(self.blksize)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
