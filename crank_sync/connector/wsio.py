"""Writing several websocket messages with one system call.

A small response is a head, a body chunk and an end marker: three messages. Sent one by one
they cost three locked writes (and three wake-ups at the router); joined, one.
"""
from __future__ import annotations

from collections.abc import Sequence

import websocket

from .frames import encode_frame


def send_frames(ws: websocket.WebSocket, messages: Sequence[tuple[int, bytes]]) -> None:
    """Send ``(opcode, payload)`` messages, each one complete websocket message, in order."""
    data = b"".join([encode_frame(opcode, payload) for opcode, payload in messages])
    with ws.lock:
        sock = ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("socket is already closed")
        sock.sendall(data)


def small_body(resp: object, limit: int) -> bool:
    """True for a fixed-length body of at most ``limit`` bytes: worth waiting for, so the
    head and the body leave together. Anything else, the head leaves at once."""
    remaining = getattr(resp, "length_remaining", None)
    return remaining is not None and remaining <= limit


def body_complete(resp: object) -> bool:
    """True when the target's response is known to have no more body bytes to read."""
    return getattr(resp, "length_remaining", None) == 0
