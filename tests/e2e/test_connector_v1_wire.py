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
GET = "GET /svc/bytes/5 HTTP/1.1\nHost:scripted\n\n_2"


class _Exchange:
    """Writes the request with ``after`` in one write, and records every message the connector
    sends until the socket closes. ``bodyless``: a GET head, then ``after`` (the connector
    reads the head with what follows it, and must look at that before the cancel watcher
    takes the socket)."""

    def __init__(self, after: bytes, bodyless: bool = False) -> None:
        request = ((ws_frame(TEXT, GET.encode()),) if bodyless else
                   (ws_frame(TEXT, REQUEST.encode()), ws_frame(BINARY, BODY),
                    ws_frame(TEXT, MARKER_BODY_ENDED.encode())))
        self.burst = b"".join((*request, after))
        self.received: list[str | bytes] = []
        self.close_code: int | None = None

    def __call__(self, ws: Any, sock: socket.socket) -> None:
        sock.sendall(self.burst)
        self.received, self.close_code = receive_until_closed(ws)


def _run(after: bytes, target: Any, bodyless: bool = False) -> _Exchange:
    exchange = _Exchange(after, bodyless)
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


def test_ping_right_behind_a_bodyless_head_is_answered_and_the_request_served(target):
    router = _run(ws_frame(PING, b"still there?"), target, bodyless=True)
    assert len(router.received) == 2, router.received
    head, body = router.received
    assert isinstance(head, str) and head.startswith("HTTP/1.1 200"), head
    assert isinstance(body, bytes) and len(body) == 5
    assert router.close_code == 1000


def test_close_right_behind_a_bodyless_head_cancels(target):
    router = _run(ws_frame(CLOSE, struct.pack("!H", 1001) + b"client gone"), target,
                  bodyless=True)
    assert router.received == []
    assert target.received_for("/svc/bytes/5") == []


def test_a_router_that_only_answers_pings_keeps_the_idle_socket(target):
    """An idle v1 socket gives up on a router silent for two ping intervals: the pongs that
    answer its own pings count as hearing from it (this router never pings)."""
    state: dict[str, Any] = {}

    def script(ws: Any, sock: socket.socket) -> None:
        # quiet for four ping intervals, answering pings only (simple-websocket does)
        assert ws.receive(timeout=2.0) is None
        state["registrations_while_quiet"] = len(router.offered)
        ws.send(GET)
        state["received"], state["close_code"] = receive_until_closed(ws)

    router = ScriptedRouter(script, name="scripted-pong-router")
    conn = Connector(target=target.url, route="svc", protocols=("1.0",), routers=[router.url],
                     sliding_window=1, ping_interval=0.5)
    conn.start()
    try:
        wait_for(router.done.is_set, what="the scripted socket to close")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    assert state["registrations_while_quiet"] == 1
    head = state["received"][0]
    assert isinstance(head, str) and head.startswith("HTTP/1.1 200"), state["received"]
