"""Our connector against a scripted v3 router: the frames it sends, as another router sees them.

PROTOCOL.md: "The receiver sends WINDOW_UPDATE(id, n) for each HEADER it receives and for DATA
once the bytes have been written onward". The connector sends a bodiless request's HEADER
acknowledgement together with its response rather than in a write of its own; it must still
send it, and before the stream's last frame.
"""
from __future__ import annotations

import socket
from typing import Any

import pytest
from support import ScriptedRouter, deterministic_bytes, wait_for

from crank_sync import Connector
from crank_sync.protocol import v3

GET_TEXT = "GET /svc/bytes/100?seed=4 HTTP/1.1\nHost:scripted\n\n"
POST_TEXT = "POST /svc/echo HTTP/1.1\nHost:scripted\nContent-Length:5\n\n"
GET_ID, POST_ID = 1, 3


class _ScriptedV3Exchange:
    """Sends a GET (HEADER with END_STREAM) and a POST (HEADER, DATA, empty DATA with
    END_STREAM), and records every frame until both responses ended."""

    def __init__(self) -> None:
        self.frames: list[v3.Frame] = []

    def __call__(self, ws: Any, sock: socket.socket) -> None:
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
                self.frames.append(frame)
                if frame.type in (v3.HEADER, v3.DATA) and frame.end_stream:
                    ended.add(frame.stream_id)

    def stream(self, stream_id: int) -> list[v3.Frame]:
        return [f for f in self.frames if f.stream_id == stream_id]


@pytest.fixture
def scripted_router():
    router = ScriptedRouter(_ScriptedV3Exchange(), subprotocols=["cranker_3.0"], name="scripted-v3-router")
    yield router
    router.stop()


def test_connector_acknowledges_every_request_header(scripted_router, target):
    conn = Connector(target=target.url, route="svc", protocols=("3.0",),
                     routers=[scripted_router.url]).start()
    try:
        wait_for(scripted_router.done.is_set, what="both responses at the scripted router")
    finally:
        assert conn.stop(timeout=5) is True
    for stream_id, text in ((GET_ID, GET_TEXT), (POST_ID, POST_TEXT)):
        frames = scripted_router.script.stream(stream_id)
        acks = [f.window_increment() for f in frames if f.type == v3.WINDOW_UPDATE]
        assert len(text.encode()) in acks, (stream_id, acks)
        last = max(i for i, f in enumerate(frames) if f.type in (v3.HEADER, v3.DATA))
        first_ack = min(i for i, f in enumerate(frames) if f.type == v3.WINDOW_UPDATE)
        assert first_ack < last, f"stream {stream_id}: HEADER acknowledged after the response"
    # the body was acknowledged once written to the target, and both answers are right
    assert 5 in [f.window_increment() for f in scripted_router.script.stream(POST_ID)
                 if f.type == v3.WINDOW_UPDATE]
    get_body = b"".join(f.payload for f in scripted_router.script.stream(GET_ID) if f.type == v3.DATA)
    post_body = b"".join(f.payload for f in scripted_router.script.stream(POST_ID) if f.type == v3.DATA)
    assert get_body == deterministic_bytes(100, 4)
    assert post_body == b"hello"
