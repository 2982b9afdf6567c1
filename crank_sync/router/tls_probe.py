"""Plain HTTP sent to a TLS port: answer ``400`` with a line saying what to do, as nginx does,
instead of a failed handshake that the client sees as a reset or an unreadable error."""
from __future__ import annotations

import logging
import socket

from .deadlines import Deadlines

log = logging.getLogger(__name__)

_BODY = b"this port speaks TLS: use https:// (or wss://)\n"
ANSWER = (b"HTTP/1.1 400 Bad Request\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n"
          b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n"
          b"Connection: close\r\n\r\n" + _BODY)
#: Most of a plain request head read before answering (so that closing does not reset the
#: connection while the answer is on its way).
_MAX_HEAD = 65536


def looks_like_http(first: bytes) -> bool:
    """A TLS connection starts with a handshake record (0x16); an HTTP request with a method
    in capital letters."""
    return bool(first) and 0x41 <= first[0] <= 0x5A


def start_tls_or_refuse(sock: socket.socket, timeout: float, deadlines: Deadlines,
                        what: str) -> bool:
    """True when ``sock`` (not yet wrapped) may go on to the TLS handshake. False when the
    client sent plain HTTP (it got the 400, and ``sock`` is shut down for writing), closed,
    or sent nothing within ``timeout``: the caller closes it."""
    key = deadlines.add(sock, timeout, what)
    try:
        sock.settimeout(timeout)
        first = sock.recv(1, socket.MSG_PEEK)
        if not looks_like_http(first):
            return bool(first)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
            data = sock.recv(_MAX_HEAD)
            if not data:
                break
            head += data
        sock.sendall(ANSWER)
        sock.shutdown(socket.SHUT_WR)
        log.info("%s: plain HTTP (%r) on a TLS port: answered 400", what,
                 head.split(b"\r\n", 1)[0][:100].decode("latin-1"))
        return False
    except OSError as err:
        log.info("%s: no TLS handshake: %s", what, err)
        return False
    finally:
        deadlines.cancel(key)

