"""Our v1 connector against a scripted router that writes a request, its body, the end-of-body
marker and one more frame in a single write.

The connector reads a v1 request body in big reads, so the frame after the marker arrives in
its buffer rather than waiting in the socket, where the cancel watcher would see it. A ping
there must not cancel the request; a close there (the client went away) must.
"""
from __future__ import annotations

import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import simple_websocket
from crank_test_support import LOOPBACK, wait_for, ws_frame

from crank_sync import Connector
from crank_sync.protocol import MARKER_BODY_ENDED

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
REQUEST = "POST /svc/echo HTTP/1.1\nHost:scripted\nContent-Length:11\n\n_1"
BODY = b"hello world"


class _ScriptedV1Router:
    """Accepts one v1 registration, writes the request with ``after`` in one write, and records
    every message the connector sends until the socket closes."""

    def __init__(self, after: bytes) -> None:
        self.received: list[str | bytes] = []
        self.close_code: int | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.claimed = False
        outer = self
        burst = b"".join((ws_frame(TEXT, REQUEST.encode()), ws_frame(BINARY, BODY),
                          ws_frame(TEXT, MARKER_BODY_ENDED.encode()), after))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with outer.lock:
                    first, outer.claimed = not outer.claimed, True
                if not first:  # the connector's other sockets: not needed
                    self.send_error(503)
                    return
                environ = {"werkzeug.socket": self.connection}
                for name, value in self.headers.items():
                    environ["HTTP_" + name.upper().replace("-", "_")] = value
                ws = simple_websocket.Server.accept(environ)
                try:
                    self.connection.sendall(burst)
                    while True:
                        msg = ws.receive(timeout=10)
                        if msg is None:
                            break
                        outer.received.append(msg)
                except simple_websocket.ConnectionClosed as closed:
                    outer.close_code = closed.reason
                finally:
                    outer.done.set()
                    ws.close()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="scripted-v1-router")
        self.thread.start()
        self.port = self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _run(after: bytes, target: Any) -> _ScriptedV1Router:
    router = _ScriptedV1Router(after)
    conn = Connector(target=target.url, route="svc", protocols=("1.0",),
                     routers=[f"ws://{LOOPBACK}:{router.port}"]).start()
    try:
        wait_for(router.done.is_set, what="the scripted socket to close")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    return router


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
