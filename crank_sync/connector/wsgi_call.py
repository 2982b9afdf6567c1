"""One WSGI application call's response side: ``start_response``, the legacy ``write()``
callable, and the response headers as the workers read them (PEP 3333)."""
from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from types import TracebackType
from typing import Any

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_STATUS_RE = re.compile(r"^(\d{3})(?: (.*))?$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")


class WsgiHeaders:
    """Response headers in the order the application gave them, duplicates kept."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for n, v in self._pairs if n.lower() == name.lower()), default)


def _check_response_head(status: str, headers: list[tuple[str, str]]) -> tuple[int, str]:
    if not isinstance(status, str):
        raise TypeError(f"WSGI status must be a str, got {type(status).__name__}")
    match = _STATUS_RE.match(status)
    if not match or _BAD_VALUE_RE.search(status):
        raise ValueError(f"invalid WSGI status {status!r}")
    for pair in headers:
        if not (isinstance(pair, tuple) and len(pair) == 2
                and isinstance(pair[0], str) and isinstance(pair[1], str)):
            raise TypeError(f"WSGI headers must be (str, str) tuples, got {pair!r}")
        if not _TOKEN_RE.match(pair[0]) or _BAD_VALUE_RE.search(pair[1]):
            raise ValueError(f"invalid response header {pair!r}")
    return int(match.group(1)), match.group(2) or ""


class AppCall:
    """The ``start_response`` and ``write()`` side of one application call."""

    def __init__(self, write_buffer: int) -> None:
        self.status: tuple[int, str] | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False  # the head left with send(): exc_info can no longer replace it
        self.spool: Any = None  # SpooledTemporaryFile of write() data, made on first use
        self.late: list[bytes] = []  # write() from inside the iterable, after send()
        self._write_buffer = write_buffer

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent or self.spool is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        headers = list(headers)
        self.status = _check_response_head(status, headers)
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: spooled until the application returns."""
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() needs bytes, got {type(data).__name__}")
        if not data:
            return
        if self.sent:
            self.late.append(bytes(data))
            return
        if self.spool is None:
            self.spool = tempfile.SpooledTemporaryFile(max_size=self._write_buffer)
        self.spool.write(data)
