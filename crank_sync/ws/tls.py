"""Reading a socket that other threads write to, TLS included.

OpenSSL does not allow one connection to be read and written by two threads at once. A
websocket, on either side, is read by its reader thread while other threads write to it (which
now and then ended it with a spurious EOF). Every write holds a lock; the reader waits for
bytes outside that lock, then reads under it with :func:`recv_nowait`, which never blocks.
"""
from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["LockedSocket", "held_bytes", "recv_locked", "recv_nowait"]


def recv_nowait(sock: ssl.SSLSocket, size: int) -> bytes | None:
    """One non-blocking read, made with the writers' lock held: the bytes, ``b""`` at EOF, or
    None when no whole TLS record has arrived yet. The socket's timeout is left as it was."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return sock.recv(size)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    finally:
        sock.settimeout(timeout)


def held_bytes(reader: Any, sock: socket.socket) -> bytes:
    """What the buffered ``reader`` of ``sock`` already holds (or the socket has at hand),
    without waiting: the bytes that came right after an HTTP head. Call it before any other
    thread uses ``sock``: its timeout is 0 meanwhile."""
    if reader is None:
        return b""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        held = reader.peek(0)
        return bytes(reader.read1(len(held))) if held else b""
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return b""
    finally:
        sock.settimeout(timeout)


def recv_locked(sock: socket.socket, size: int, lock: AbstractContextManager[Any]) -> bytes:
    """A blocking read within the socket's timeout (``TimeoutError`` after it). On TLS the read
    never runs beside another thread's write: every writer holds ``lock``, and the wait for
    bytes happens outside it."""
    if not isinstance(sock, ssl.SSLSocket):
        return sock.recv(size)
    timeout = sock.gettimeout()
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        if not sock.pending():
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not poller.poll(None if wait is None else wait * 1000):
                raise TimeoutError("timed out")
        with lock:
            data = recv_nowait(sock, size)
        if data is not None:
            return data
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("timed out")


class LockedSocket:
    """A socket whose ``send`` is a locked ``sendall``: safe to call from several threads.

    On TLS, a read also takes the lock and does not block: the reader waits for bytes outside
    the lock (select), and a read that finds no whole TLS record returns None: wait and read
    again.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.lock = threading.RLock()
        self.tls = isinstance(sock, ssl.SSLSocket)

    def send(self, data: bytes) -> int:
        with self.lock:
            self._sock.sendall(data)
        return len(data)

    def recv(self, size: int) -> bytes | None:
        if not self.tls:
            return self._sock.recv(size)
        with self.lock:
            return recv_nowait(self._sock, size)  # type: ignore[arg-type]

    def recv_into(self, buffer: memoryview) -> int:
        """Plain TCP only (the reader's bulk reads: a TLS read never brings that much)."""
        assert not self.tls
        return self._sock.recv_into(buffer)

    def fileno(self) -> int:
        return self._sock.fileno()

    def pending(self) -> int:
        """Bytes already decrypted by TLS and waiting in its buffer (0 without TLS)."""
        pending = getattr(self._sock, "pending", None)
        return int(pending()) if pending is not None else 0

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
