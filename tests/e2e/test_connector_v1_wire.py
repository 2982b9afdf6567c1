"""Our v1 connector against a scripted router that writes a request, its body, the end-of-body
marker and one more frame in a single write.

The connector reads a v1 request body in big reads, so the frame after the marker arrives in
its buffer rather than waiting in the socket, where the cancel watcher would see it. A ping
there must not cancel the request; a close there (the client went away) must.
"""
from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from support import ScriptedRouter, receive_until_closed, wait_for, ws_frame

from crank_sync import Connector
from crank_sync.protocol import MARKER_BODY_ENDED

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
REQUEST = "POST /svc/echo HTTP/1.1\nHost:scripted\nContent-Length:11\n\n_1"
BODY = b"hello world"


class _Exchange:
    """Writes the request with ``after`` in one write, and records every message the connector
    sends until the socket closes."""

    def __init__(self, after: bytes) -> None:
        self.burst = b"".join((ws_frame(TEXT, REQUEST.encode()), ws_frame(BINARY, BODY),
                               ws_frame(TEXT, MARKER_BODY_ENDED.encode()), after))
        self.received: list[str | bytes] = []
        self.close_code: int | None = None

    def __call__(self, ws: Any, sock: socket.socket) -> None:
        sock.sendall(self.burst)
        self.received, self.close_code = receive_until_closed(ws)


def _run(after: bytes, target: Any) -> _Exchange:
    exchange = _Exchange(after)
    router = ScriptedRouter(exchange, name="scripted-v1-router")
    conn = Connector(target=target.url, route="svc", protocols=("1.0",), routers=[router.url])
    conn.start()
    try:
        wait_for(router.done.is_set, what="the scripted socket to close")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    return exchange


def test_ping_right_after_the_marker_does_not_cancel(target):
    router = _run(ws_frame(PING, b"still there?"), target)
    assert len(router.received) == 2, router.received
    head, body = router.received
    assert isinstance(head, str) and head.startswith("HTTP/1.1 200"), head
    assert body == BODY
    assert router.close_code == 1000


@pytest.mark.parametrize("payload", [struct.pack("!H", 1001) + b"client gone", b""],
                         ids=["1001", "no-code"])
def test_close_right_after_the_marker_cancels(target, payload):
    router = _run(ws_frame(CLOSE, payload), target)
    assert router.received == []
