"""Reading a TLS socket that other threads write to.

OpenSSL does not allow one connection to be read and written by two threads at once. A v3
socket, on either side, is read by its reader thread while other threads write to it (which
now and then ended it with a spurious EOF). Every write holds a lock; the reader waits for
bytes outside that lock, then reads under it with :func:`recv_nowait`, which never blocks.
"""
from __future__ import annotations

import ssl

__all__ = ["recv_nowait"]


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
