"""Opening a websocket to the router, with the upgrade response read in one go.

websocket-client reads the 101 response one byte per ``recv`` call: about 200 system calls
(and as many GIL hand-offs) per socket. A v1 connector opens a socket per request, so that
was a third of its CPU time. Here websocket-client still opens the connection (proxies from the
environment, TLS with our context, socket options) and builds and checks the handshake; only
the reading of the response head differs: on a plain socket it peeks at what has arrived and
consumes exactly the head, so no byte of a following frame is taken from the socket. A TLS
socket cannot peek and keeps websocket-client's own reader.

Measured with ``scripts/bench.py``-style load (wrk, 16 connections, v1): connector CPU per
request 1,690 -> 1,040 us.
"""
from __future__ import annotations

import socket
import ssl
from typing import Any

import websocket
from websocket import _handshake, _http

from .frames import mask_keys

__all__ = ["open_websocket", "refusal_text"]

#: Longest upgrade response head we accept.
MAX_HEAD = 65536
#: Longest part of a refusal's body we read (the router's reason is one short line).
MAX_REFUSAL = 4096


def open_websocket(url: str, *, timeout: float, header: list[str],
                   sslopt: dict[str, Any] | None = None,
                   sockopt: tuple[tuple[int, int, int], ...] = ()) -> websocket.WebSocket:
    """A connected websocket-client ``WebSocket``, as ``websocket.create_connection`` gives.

    Raises ``WebSocketBadStatusException`` for an answer other than 101, and
    ``WebSocketException`` or ``OSError`` for anything else that goes wrong.
    """
    ws = websocket.WebSocket(sslopt=sslopt, sockopt=list(sockopt), enable_multithread=True,
                             skip_utf8_validation=True)
    ws.set_mask_key(mask_keys)
    ws.sock_opt.timeout = timeout
    sock, (hostname, port, resource) = _http.connect(url, ws.sock_opt, _http.proxy_info(), None)
    try:
        lines, key = _handshake._get_handshake_headers(resource, url, hostname, port,
                                                       {"header": header})
        sock.sendall("\r\n".join(lines).encode())
        status, headers, reason = read_response_head(sock)
        if status != 101:
            body = read_refusal(sock, headers)
            raise websocket.WebSocketBadStatusException(
                f"Handshake status {status} {reason}", status, reason, headers, body)
        ok, subprotocol = _handshake._validate(headers, key, None)
        if not ok:
            raise websocket.WebSocketException("Invalid WebSocket Header")
    except BaseException:
        sock.close()
        raise
    ws.sock = sock
    ws.handshake_response = _handshake.handshake_response(status, headers, subprotocol)
    ws.connected = True
    return ws


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], str]:
    """Status, headers (lower-case names) and reason of the HTTP response head on ``sock``."""
    if isinstance(sock, ssl.SSLSocket):
        status, headers, reason = _http.read_headers(sock)
        return int(status), headers, reason or ""
    head = _read_head(sock)
    return parse_response_head(head)


def read_refusal(sock: socket.socket, headers: dict[str, str]) -> bytes:
    """The body of a refused upgrade (a router says why in it), at most :data:`MAX_REFUSAL`
    bytes; empty when it has none or it does not arrive within the socket's timeout."""
    try:
        length = min(int(headers.get("content-length", "0")), MAX_REFUSAL)
    except ValueError:
        return b""
    body = b""
    try:
        while len(body) < length:
            data = sock.recv(length - len(body))
            if not data:
                break
            body += data
    except OSError:  # a timeout or a reset: the status alone has to do
        pass
    return body


def refusal_text(err: websocket.WebSocketBadStatusException) -> str:
    """One line saying why a router refused a registration: its status and reason, and the
    first line of what it said, with a hint where the status suggests a wrong port."""
    reason = getattr(err, "resp_body", None) or b""
    said = reason.decode("utf-8", "replace").strip().splitlines()
    status = getattr(err, "status_code", 0)
    text = f"router answered {status} {getattr(err, 'status_message', '') or ''}".rstrip()
    first = said[0].removeprefix(text.removeprefix("router answered ")).lstrip(": ") \
        if said else ""
    if first:
        text += f": {first[:300]}"
    if status == 404:
        text += " (is this the router's registration port?)"
    return text


def _read_head(sock: socket.socket) -> bytes:
    taken = bytearray()
    while True:
        peeked = sock.recv(MAX_HEAD - len(taken), socket.MSG_PEEK)
        if not peeked:
            raise websocket.WebSocketConnectionClosedException(
                "router closed the connection during the handshake")
        seen = taken + peeked
        end = _head_end(seen, max(0, len(taken) - 3))
        if end >= 0:
            taken += sock.recv(end - len(taken))
            return bytes(taken)
        if len(seen) >= MAX_HEAD:
            raise websocket.WebSocketException("handshake response head too long")
        # all of it is head: take it, and wait for the rest
        taken += sock.recv(len(peeked))


def _head_end(data: bytes | bytearray, start: int) -> int:
    """Offset just past the blank line ending a head (CRLF or, as websocket-client allows, bare
    LF line endings), or -1."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
            if (i := data.find(sep, start)) >= 0]
    return min(ends) if ends else -1


def parse_response_head(head: bytes) -> tuple[int, dict[str, str], str]:
    """Parse a response head the way websocket-client does (repeated Set-Cookie joined)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        raise websocket.WebSocketException(f"Invalid header line, not valid UTF-8: {err}") from None
    lines = text.split("\n")
    parts = lines[0].strip().split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        raise websocket.WebSocketException(f"Invalid status line: {lines[0]!r}") from None
    reason = parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise websocket.WebSocketException("Invalid header")
        name = name.lower()
        value = value.strip()
        if name == "set-cookie" and headers.get(name):
            headers[name] += "; " + value
        else:
            headers[name] = value
    return status, headers, reason
