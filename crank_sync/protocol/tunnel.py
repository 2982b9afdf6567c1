"""WebSockets through the tunnel: crank_sync's extension of Cranker (docs/websocket-tunnel.rst).

A connector offers the capability in its registration request with
``CrankSync-Capabilities: websocket``; a crank_sync router that takes it answers with the same
header in its 101. Only then does the router send that socket a client's websocket upgrade:
the request head keeps ``Upgrade`` and ``Connection: Upgrade``, and once the service answered
101 the bytes of the upgraded connection travel both ways as the request's and the response's
body, untouched. Neither side parses the websocket frames inside, except to find the frame
boundaries (:class:`FrameBoundaries`) where an idle connection may be closed with 1001.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from .headers import connection_tokens

#: The registration header that offers (connector) and accepts (router) the extension.
CAPABILITIES_HEADER = "CrankSync-Capabilities"
WEBSOCKET = "websocket"

#: Hop-by-hop headers a 101 answer must not pass on as they are (``Connection`` is rewritten).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-connection",
                         "te", "trailer", "transfer-encoding", "content-length"})


def capabilities(value: str | None) -> frozenset[str]:
    """The capabilities a ``CrankSync-Capabilities`` value names (lower case)."""
    return frozenset(t.strip().lower() for t in (value or "").split(",") if t.strip())


def is_websocket_upgrade(headers: Iterable[tuple[str, str]]) -> bool:
    """A request asking for a websocket: ``Connection: upgrade`` and ``Upgrade: websocket``."""
    headers = list(headers)
    if "upgrade" not in connection_tokens(headers):
        return False
    return any(name.lower() == "upgrade" and WEBSOCKET in capabilities(value)
               for name, value in headers)


def upgrade_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` (already stripped of hop-by-hop ones) with ``Connection: Upgrade`` and
    ``Upgrade: websocket`` again, for the request or the 101 answer."""
    kept = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP | {"upgrade"}]
    return [*kept, ("Connection", "Upgrade"), ("Upgrade", WEBSOCKET)]


def close_frame(code: int, reason: str, masked: bool) -> bytes:
    """A websocket close frame (masked as a client sends it, or not as a server does)."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    if not masked:
        return bytes([0x88, len(payload)]) + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + key + body


class FrameBoundaries:
    """Follows one direction of a websocket connection, frame header by frame header, without
    reading payloads: ``at_boundary`` is True between frames, where another frame may be put
    in. Payload bytes are skipped by count; nothing is unmasked or copied."""

    __slots__ = ("_skip", "_head", "closed", "frames")

    def __init__(self) -> None:
        self._skip = 0  # payload bytes of the current frame still to come
        self._head = b""  # a frame header split across chunks
        #: A close frame went through: nothing may be put in after it.
        self.closed = False
        #: Frames seen whole (headers parsed).
        self.frames = 0

    @property
    def at_boundary(self) -> bool:
        return self._skip == 0 and not self._head and not self.closed

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            head = self._head + bytes(view[:14 - len(self._head)])
            size = _header_size(head)
            if size is None or len(head) < size:  # the chunk ended inside the header
                self._head = head
                return
            used = size - len(self._head)
            self._head = b""
            view = view[used:]
            self._skip = _payload_length(head)
            self.frames += 1
            if head[0] & 0x0F == 0x8:
                self.closed = True


def _header_size(head: bytes) -> int | None:
    """The size of the frame header starting ``head``, None until its second byte is known."""
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    return size + (4 if head[1] & 0x80 else 0)


def _payload_length(head: bytes) -> int:
    length = head[1] & 0x7F
    if length == 126:
        return int(struct.unpack("!H", head[2:4])[0])
    if length == 127:
        return int(struct.unpack("!Q", head[2:10])[0])
    return length
