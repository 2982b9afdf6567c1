"""Handing one client's socket between threads.

A response body may be written to the client by the client's own worker thread or, while that
thread waits, by a connector socket's reader thread (v1: the socket's only reader; v3: the
reader shared by every stream of the socket). :class:`ClientSink` is the one place where that
hand-over is written down: a lock held by whoever writes, a non-blocking try for a thread that
must not wait on this client, an error slot for the worker to raise, and the time of the last
write for the idle timeout.
"""
from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

from ..errors import ClientGone


def writable_now(sock: socket.socket) -> bool:
    """Would a send on ``sock`` take at least one byte without waiting? (An error or hang-up
    counts as writable: the send then raises.)"""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


class ClientSink:
    """The client socket of one exchange, as threads hand it between them.

    :meth:`write` blocks (bounded by the client socket's timeout) and is for a thread that
    may wait on this one client (the v1 socket's reader, which serves no one else);
    :meth:`try_write` never blocks and returns what the socket did not take (the v3 reader,
    which serves every stream of its socket). Both hold :attr:`lock` while they write;
    :meth:`try_write` does not wait for it. The client's worker writes without the lock, and
    only after it took the client back: v1 ``RouterWebSocket.detach``, v3
    ``RouterStream.get``/``take_back``, each of which returns once the reader is out.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.lock = threading.Lock()
        #: What went wrong writing from another thread, for the client's worker to raise.
        self.error: BaseException | None = None
        #: When a write last went out (monotonic), for the idle timeout.
        self.last_activity = 0.0
        #: A TLS socket has no non-blocking send on a blocking socket: never tried.
        self.can_try = not isinstance(sock, ssl.SSLSocket)

    def try_write(self, parts: list[bytes]) -> bytes:
        """Send ``parts`` with one non-blocking ``sendmsg``; returns the bytes not sent (all of
        them when another thread is writing). :class:`ClientGone` when the client is gone."""
        if not self.lock.acquire(blocking=False):
            return b"".join(parts)
        try:
            # On a socket with a timeout, sendmsg first waits for writability for the whole
            # timeout, whatever the flags: only send when poll says it will not wait.
            if writable_now(self._sock):
                sent = self._sock.sendmsg(parts, (), socket.MSG_DONTWAIT)
            else:
                sent = 0
        except BlockingIOError:
            sent = 0
        except OSError as err:
            raise ClientGone(f"writing response: {err}") from err
        finally:
            self.lock.release()
        if sent:
            self.last_activity = time.monotonic()
        if sent == sum(len(p) for p in parts):
            return b""
        return b"".join(parts)[sent:]

    def write(self, write: Callable[..., None], *args: bytes) -> None:
        """Run ``write(*args)`` (a blocking write to this client) under the lock; a failure
        is recorded in :attr:`error` and raised."""
        with self.lock:
            try:
                write(*args)
            except BaseException as err:
                self.fail(err)
                raise
            self.last_activity = time.monotonic()

    @property
    def busy(self) -> bool:
        """Is a thread writing to the client now? (A slow client, not an idle connector.)"""
        return self.lock.locked()

    def touch(self) -> None:
        """Count now as activity (a hand-over starts the idle clock)."""
        self.last_activity = time.monotonic()

    def fail(self, err: BaseException) -> None:
        """Record the first failure; the client's worker raises it."""
        if self.error is None:
            self.error = err
