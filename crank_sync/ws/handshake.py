"""The websocket opening handshake (RFC 6455 section 4), both ends, with few system calls.

The server end answers a request head another module already parsed. The client end sends
the upgrade and reads the response head: on a plain socket it peeks at what has arrived and
consumes exactly the head (websocket-client reads it one byte per ``recv``: about 200 system
calls per socket, a third of a v1 connector's CPU), so no byte of a following frame is taken
from the socket. A TLS socket cannot peek and is read a byte at a time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
from typing import NamedTuple
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, getproxies_environment, proxy_bypass

from ..errors import ConnectionLost, HandshakeError

__all__ = ["MAX_HEAD", "HandshakeError", "HandshakeResponse", "accept_value",
           "client_request", "connect", "parse_response_head", "read_response_head",
           "server_response", "subprotocol_of", "Target"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Longest upgrade response head we accept.
MAX_HEAD = 65536


class Target(NamedTuple):
    """Where an upgrade request goes: the ``Host`` value, the resource and the Origin scheme."""

    hostport: str
    resource: str
    scheme: str


class HandshakeResponse(NamedTuple):
    """What came back: the status, the headers (lower-case names) and the subprotocol (None
    unless the server named one)."""

    status: int
    headers: dict[str, str]
    subprotocol: str | None


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a request's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def server_response(key: str, subprotocol: str | None,
                    extra_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The 101 head accepting a request with ``key``: no extension, our subprotocol and
    extra headers."""
    head = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
            b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + accept_value(key).encode()]
    if subprotocol:
        head.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode())
    head.extend(name + b": " + value for name, value in extra_headers)
    return b"\r\n".join(head) + b"\r\n\r\n"


def connect(url: str, timeout: float, context: ssl.SSLContext | None,
            sockopt: tuple[tuple[int, int, int], ...] = (),
            address: str | None = None) -> tuple[socket.socket, Target]:
    """A TCP (and for ``wss://``, TLS) connection to ``url``'s host (or to ``address``, one
    of its addresses, the certificate still checked for the host) and the request's ``Host``
    value and resource."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise HandshakeError(f"not a websocket url: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname
    proxy = _proxy_for(host, secure)
    sock = socket.create_connection(proxy[0] if proxy else (address or host, port), timeout)
    try:
        for level, name, value in sockopt:
            sock.setsockopt(level, name, value)
        if proxy:
            _tunnel(sock, host, port, proxy[1])
        if secure:
            ctx = context or ssl.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    hostport = shown if port == (443 if secure else 80) else f"{shown}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return sock, Target(hostport, resource, "https" if secure else "http")


#: What the environment's proxy settings were when :func:`_proxy_for` last looked them up.
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy",
                    "NO_PROXY", "REQUEST_METHOD")
_proxy_cache: dict[tuple[object, ...], tuple[tuple[str, int], str | None] | None] = {}


def _proxy_for(host: str, secure: bool) -> tuple[tuple[str, int], str | None] | None:
    """The HTTP proxy the environment names for ``host`` (``http_proxy`` for ws://,
    ``https_proxy`` for wss://, ``no_proxy`` honoured; loopback bypassed when no ``no_proxy``
    is set), as websocket-client's ``create_connection`` picks it; and its credentials.

    A v1 connector dials a socket per request, and ``getproxies`` scans the whole environment
    (twice, with ``proxy_bypass``): the answer is kept while the proxy variables stay the
    same. Where the system, not the environment, names proxies (macOS, Windows), it is asked
    every time."""
    if getproxies is not getproxies_environment:  # pragma: no cover - macOS and Windows
        return _lookup_proxy(host, secure)
    key = (host, secure, *(os.environ.get(name) for name in _PROXY_VARIABLES))
    try:
        return _proxy_cache[key]
    except KeyError:
        pass
    found = _lookup_proxy(host, secure)
    if len(_proxy_cache) >= 256:
        _proxy_cache.clear()
    _proxy_cache[key] = found
    return found


def _lookup_proxy(host: str, secure: bool) -> tuple[tuple[str, int], str | None] | None:
    proxies = getproxies()
    url = proxies.get("https" if secure else "http")
    if not url or proxy_bypass(host) or ("no" not in proxies
                                         and host in ("localhost", "127.0.0.1")):
        return None
    parts = urlsplit(url if "://" in url else "http://" + url)
    if not parts.hostname:
        return None
    auth = None
    if parts.username is not None:
        auth = base64.b64encode(
            f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
    return (parts.hostname, parts.port or 80), auth


def _tunnel(sock: socket.socket, host: str, port: int, auth: str | None) -> None:
    """Ask the proxy on ``sock`` for a tunnel to ``host:port`` (HTTP CONNECT)."""
    shown = f"[{host}]" if ":" in host else host
    lines = [f"CONNECT {shown}:{port} HTTP/1.1", f"Host: {shown}:{port}"]
    if auth:
        lines.append(f"Proxy-Authorization: Basic {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    status, _, reason = read_response_head(sock)
    if status != 200:
        raise HandshakeError(f"proxy refused the tunnel: {status} {reason}".rstrip())


def client_request(target: Target, header: list[str]) -> tuple[bytes, str]:
    """The upgrade request for ``target`` (as :func:`connect` returns it) and its key."""
    hostport, resource, scheme = target
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {resource} HTTP/1.1", "Upgrade: websocket", f"Host: {hostport}",
             f"Origin: {scheme}://{hostport}", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", "Connection: Upgrade", *header, "", ""]
    return "\r\n".join(lines).encode(), key


def subprotocol_of(headers: dict[str, str], key: str) -> str | None:
    """Check a 101 response's headers against the request's key; the subprotocol the server
    chose, if any. :class:`HandshakeError` when they do not accept the upgrade."""
    for name, value in (("upgrade", "websocket"), ("connection", "upgrade")):
        if value not in [v.strip().lower() for v in headers.get(name, "").split(",")]:
            raise HandshakeError(f"Invalid WebSocket Header: {name}")
    accept = headers.get("sec-websocket-accept", "").strip().lower()
    if not hmac.compare_digest(accept.encode(), accept_value(key).lower().encode()):
        raise HandshakeError("Invalid WebSocket Header: sec-websocket-accept")
    return headers.get("sec-websocket-protocol") or None


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], str]:
    """Status, headers (lower-case names) and reason of the HTTP response head on ``sock``,
    reading no byte beyond it."""
    if isinstance(sock, ssl.SSLSocket):
        return parse_response_head(_read_head_tls(sock))
    return parse_response_head(_read_head(sock))


def _read_head_tls(sock: ssl.SSLSocket) -> bytes:
    head = bytearray()
    while _head_end(head, max(0, len(head) - 4)) < 0:
        if len(head) >= MAX_HEAD:
            raise HandshakeError("handshake response head too long")
        byte = sock.recv(1)
        if not byte:
            raise ConnectionLost("router closed the connection during the handshake")
        head += byte
    return bytes(head)


def _read_head(sock: socket.socket) -> bytes:
    taken = bytearray()
    while True:
        peeked = sock.recv(MAX_HEAD - len(taken), socket.MSG_PEEK)
        if not peeked:
            raise ConnectionLost("router closed the connection during the handshake")
        seen = taken + peeked
        end = _head_end(seen, max(0, len(taken) - 3))
        if end >= 0:
            taken += sock.recv(end - len(taken))
            return bytes(taken)
        if len(seen) >= MAX_HEAD:
            raise HandshakeError("handshake response head too long")
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
        raise HandshakeError(f"Invalid header line, not valid UTF-8: {err}") from None
    lines = text.split("\n")
    parts = lines[0].strip().split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        raise HandshakeError(f"Invalid status line: {lines[0]!r}") from None
    reason = parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError("Invalid header")
        name = name.lower()
        value = value.strip()
        if name == "set-cookie" and headers.get(name):
            headers[name] += "; " + value
        else:
            headers[name] = value
    return status, headers, reason
