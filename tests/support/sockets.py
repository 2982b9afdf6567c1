"""Raw sockets on the loopback address: exact bytes out, whatever comes back in.

For what ``requests`` / ``http.client`` would refuse or normalise, and for connections whose
close is the thing under test.
"""

from __future__ import annotations

import http.client
import select
import socket
from typing import Any

LOOPBACK = "127.0.0.1"


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Everything the router sends until it closes the connection: (bytes, closed).

    ``closed`` is False when the connection was still open at the deadline.
    """
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return data, True
    except TimeoutError:
        return data, False


class ResponseReader:
    """Parses consecutive responses from one socket through one buffered file.

    ``http.client.HTTPResponse(sock)`` makes a new buffered file per response, which may swallow
    the start of the next pipelined response; this shares one.
    """

    class _KeepOpen:
        """The shared file; HTTPResponse closes its file after each body, so ignore close()."""

        def __init__(self, raw: Any) -> None:
            self._raw = raw

        def __getattr__(self, name: str) -> Any:
            return getattr(self._raw, name)

        def close(self) -> None:
            pass

    def __init__(self, sock: socket.socket) -> None:
        self._file = self._KeepOpen(sock.makefile("rb"))

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        return self._file

    def next(self, method: str = "GET") -> http.client.HTTPResponse:
        resp = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp


def raw_exchange(
    port: int, data: bytes, timeout: float = 10.0, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send exact bytes to ``port`` and parse one HTTP response from the same connection.

    Used for requests that ``requests``/``http.client`` would refuse or normalise.
    """
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything; read the answer
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        body = resp.read()
        return resp.status, resp.headers, body
    finally:
        sock.close()


def is_closed(sock: socket.socket) -> bool:
    """True once the peer closed ``sock`` (EOF or reset); never blocks."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(4096, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
