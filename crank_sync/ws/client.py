"""Writing several client frames with one system call.

A small response is a head, a body chunk and an end marker: three messages. Sent one by one
they cost three locked writes (and three wake-ups at the router); joined, one.
"""
from __future__ import annotations

from collections.abc import Sequence

import websocket

from .frames import encode_frame

__all__ = ["send_frames"]


def send_frames(ws: websocket.WebSocket, messages: Sequence[tuple[int, bytes]]) -> None:
    """Send ``(opcode, payload)`` messages, each one complete websocket message, in order,
    through websocket-client's public ``lock`` and ``sock``."""
    data = b"".join([encode_frame(opcode, payload, masked=True) for opcode, payload in messages])
    with ws.lock:
        sock = ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("socket is already closed")
        sock.sendall(data)
