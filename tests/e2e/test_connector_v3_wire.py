"""Our connector against a scripted v3 router: the frames it sends, as another router sees them.

PROTOCOL.md: "The receiver sends WINDOW_UPDATE(id, n) for each HEADER it receives and for DATA
once the bytes have been written onward". The connector sends a bodiless request's HEADER
acknowledgement together with its response rather than in a write of its own; it must still
send it, and before the stream's last frame.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import simple_websocket
from crank_test_support import LOOPBACK, deterministic_bytes, wait_for

from crank_sync import Connector
from crank_sync.protocol import v3

GET_TEXT = "GET /svc/bytes/100?seed=4 HTTP/1.1\nHost:scripted\n\n"
POST_TEXT = "POST /svc/echo HTTP/1.1\nHost:scripted\nContent-Length:5\n\n"
GET_ID, POST_ID = 1, 3


class _ScriptedV3Router:
    """Accepts one v3 registration, sends a GET (HEADER with END_STREAM) and a POST (HEADER,
    DATA, empty DATA with END_STREAM), and records every frame until both responses ended."""

    def __init__(self) -> None:
        self.frames: list[v3.Frame] = []
        self.done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with outer.lock:
                    first, outer.claimed = not outer.claimed, True
                if not first:  # a reconnection after the script: not needed
                    self.send_error(503)
                    return
                environ = {"werkzeug.socket": self.connection}
                for name, value in self.headers.items():
                    environ["HTTP_" + name.upper().replace("-", "_")] = value
                ws = simple_websocket.Server.accept(environ, subprotocols=["cranker_3.0"])
                try:
                    for frame in v3.header_frames(GET_ID, GET_TEXT, True):
                        ws.send(frame)
                    for frame in v3.header_frames(POST_ID, POST_TEXT, False):
                        ws.send(frame)
                    ws.send(v3.data_frame(POST_ID, b"hello"))
                    ws.send(v3.data_frame(POST_ID, b"", end_stream=True))
                    ended: set[int] = set()
                    while ended != {GET_ID, POST_ID}:
                        msg = ws.receive(timeout=10)
                        if msg is None:
                            break
                        if isinstance(msg, bytes):
                            frame = v3.decode(msg)
                            outer.frames.append(frame)
                            if frame.type in (v3.HEADER, v3.DATA) and frame.end_stream:
                                ended.add(frame.stream_id)
                finally:
                    outer.done.set()
                    ws.close()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.claimed = False
        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="scripted-v3-router")
        self.thread.start()
        self.port = self.server.server_address[1]

    def stream(self, stream_id: int) -> list[v3.Frame]:
        return [f for f in self.frames if f.stream_id == stream_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def scripted_router():
    router = _ScriptedV3Router()
    yield router
    router.stop()


def test_connector_acknowledges_every_request_header(scripted_router, target):
    conn = Connector(target=target.url, route="svc", protocols=("3.0",),
                     routers=[f"ws://{LOOPBACK}:{scripted_router.port}"]).start()
    try:
        wait_for(scripted_router.done.is_set, what="both responses at the scripted router")
    finally:
        assert conn.stop(timeout=5) is True
    for stream_id, text in ((GET_ID, GET_TEXT), (POST_ID, POST_TEXT)):
        frames = scripted_router.stream(stream_id)
        acks = [f.window_increment() for f in frames if f.type == v3.WINDOW_UPDATE]
        assert len(text.encode()) in acks, (stream_id, acks)
        last = max(i for i, f in enumerate(frames) if f.type in (v3.HEADER, v3.DATA))
        first_ack = min(i for i, f in enumerate(frames) if f.type == v3.WINDOW_UPDATE)
        assert first_ack < last, f"stream {stream_id}: HEADER acknowledged after the response"
    # the body was acknowledged once written to the target, and both answers are right
    assert 5 in [f.window_increment() for f in scripted_router.stream(POST_ID)
                 if f.type == v3.WINDOW_UPDATE]
    get_body = b"".join(f.payload for f in scripted_router.stream(GET_ID) if f.type == v3.DATA)
    post_body = b"".join(f.payload for f in scripted_router.stream(POST_ID) if f.type == v3.DATA)
    assert get_body == deterministic_bytes(100, 4)
    assert post_body == b"hello"
