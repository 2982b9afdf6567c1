"""Rogue connectors against a router process: garbage status lines, huge or invalid headers,
frames after the end, connectors that never answer and one that ignores flow control.

Each rogue is a websocket-client connection in this process speaking v1 text messages or raw
v3 frames (``crank_sync.protocol.v3``) to a real router process. The client sees a clear
502/504 (or the whole response), a healthy route on the same router, served by a connector
process, keeps serving, and after three rogues the router is back to its baseline of threads
and descriptors.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket
from support import LOOPBACK, wait_for
from support.processes import Procs, get, in_thread, raw_request, serves, settled
from websocket import ABNF

from crank_sync.protocol import v3

#: the router takes messages of at most 1 MiB here, so a "huge" head costs little to send; a
#: GET whose rogue socket failed before the head is retried, and waits at most 1 s for another
#: (the healthy route's v3 socket is never taken out of the pool)
ROGUE_ROUTER_ARGS = ("--max-message-bytes", str(1 << 20), "--idle-timeout", "1.5",
                     "--connector-max-wait", "1")
HUGE = 2 << 20


@pytest.fixture(scope="module")
def rogue_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """One router process with a healthy route ``svc`` (a connector process in front of a
    bench target process), shared by the rogue tests of this module."""
    procs = Procs(tmp_path_factory.mktemp("rogue"))
    try:
        target = procs.target()
        router = procs.router(*ROGUE_ROUTER_ARGS)
        procs.connector(router, target, "3.0")
        serves(router)
        yield router, procs
    finally:
        procs.close()


class Rogue:
    """A connector socket that does as the test says."""

    def __init__(self, router: Any, protocol: str) -> None:
        self.protocol = protocol
        headers = ["Route: rogue"] + (["Sec-WebSocket-Protocol: cranker_3.0"]
                                      if protocol == "3.0" else ["CrankerProtocol: 1.0"])
        self.ws = websocket.create_connection(
            f"ws://{LOOPBACK}:{router.registration_port}/register/"
            f"?connectorInstanceID=rogue&componentName=rogue", header=headers, timeout=10)
        wait_for(lambda: router.sockets("rogue") >= 1, what="the rogue registered")

    def request(self) -> int:
        """Wait for a request; its v3 stream id (0 for v1)."""
        while True:
            opcode, data = self.ws.recv_data()
            if self.protocol == "1.0":
                assert opcode == ABNF.OPCODE_TEXT, opcode
                return 0
            frame = v3.decode(data)
            if frame.type == v3.HEADER and frame.end_header:
                return frame.stream_id

    def head(self, stream: int, text: str, end_stream: bool = False) -> None:
        if self.protocol == "1.0":
            self.ws.send(text)
        else:
            for frame in v3.header_frames(stream, text, end_stream):
                self.ws.send_binary(frame)

    def body(self, stream: int, data: bytes, end: bool = False) -> None:
        if self.protocol == "1.0":
            self.ws.send_binary(data)
        else:
            self.ws.send_binary(v3.data_frame(stream, data, end_stream=end))

    def close_frame(self, code: int = 1000) -> None:
        """A close frame, without waiting for the router's answer."""
        self.ws.send(code.to_bytes(2, "big"), opcode=ABNF.OPCODE_CLOSE)

    def abort(self) -> None:
        self.ws.shutdown()


def _client(router: Any, path: str = "/rogue/x") -> tuple[Any, dict[str, Any]]:
    return in_thread(lambda: get(f"{router.url}{path}", timeout=20), "test-rogue-client")


def _status(thread: Any, out: dict[str, Any]) -> int:
    thread.join(30)
    assert "result" in out, out
    return int(out["result"].status_code)


# --------------------------------------------------------------------------- the behaviours


def garbage_status(router: Any, rogue: Rogue) -> None:
    thread, out = _client(router)
    stream = rogue.request()
    rogue.head(stream, "HTTP/1.1 abc garbage\n\n" if rogue.protocol == "3.0" else "HTTP/1.1 abc\n")
    assert _status(thread, out) == 502


def invalid_header(router: Any, rogue: Rogue) -> None:
    thread, out = _client(router)
    stream = rogue.request()
    rogue.head(stream, "HTTP/1.1 200 OK\nBad Name:x\nX-Null:a\x00b\n")
    assert _status(thread, out) == 502


def huge_head(router: Any, rogue: Rogue) -> None:
    """Over the router's message limit (v1) or its header assembly limit (v3, 1 MiB)."""
    thread, out = _client(router)
    stream = rogue.request()
    try:
        rogue.head(stream, "HTTP/1.1 200 OK\nX-Big:" + "b" * HUGE + "\n")
    except (OSError, websocket.WebSocketException):
        pass  # the router may close the socket before all of it is sent
    assert _status(thread, out) == 502


def frames_after_the_end(router: Any, rogue: Rogue) -> None:
    """v1: binary messages after the close frame; v3: frames for a stream that has ended.
    The client gets exactly the response; over v3 the socket goes on serving."""
    thread, out = _client(router)
    stream = rogue.request()
    rogue.head(stream, "HTTP/1.1 200 OK\nContent-Length:5\n")
    rogue.body(stream, b"hello", end=True)
    if rogue.protocol == "1.0":
        rogue.close_frame()
        try:
            for _ in range(3):
                rogue.body(stream, b"after the close")
        except (OSError, websocket.WebSocketException):
            pass  # the router answered the close and hung up first: nothing more to send
    else:
        rogue.body(stream, b"after the end", end=True)
        rogue.ws.send_binary(v3.rst_frame(stream, 1011, "late"))
        rogue.ws.send_binary(v3.window_update_frame(stream, 1000))
    thread.join(30)
    assert out.get("result") is not None, out
    assert (out["result"].status_code, out["result"].content) == (200, b"hello")
    if rogue.protocol == "3.0":
        thread, out = _client(router)
        second = rogue.request()
        assert second != stream
        rogue.head(second, "HTTP/1.1 200 OK\nContent-Length:2\n")
        rogue.body(second, b"ok", end=True)
        thread.join(30)
        assert (out["result"].status_code, out["result"].content) == (200, b"ok")


def never_answers(router: Any, rogue: Rogue) -> None:
    thread, out = _client(router)
    rogue.request()
    assert _status(thread, out) == 504  # after the router's idle timeout (1.5 s here)


def ignores_flow_control(router: Any, rogue: Rogue) -> None:
    """DATA without waiting for WINDOW_UPDATE, to a client that reads nothing: the router
    resets that stream (1002) and drops what still comes for it, instead of buffering without
    bound or blocking the socket's other streams (the healthy route is served after)."""
    rss = router.usage().rss
    sock = raw_request(router.http_port, b"GET /rogue/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        stream = rogue.request()
        rogue.head(stream, "HTTP/1.1 200 OK\n")
        chunk = v3.data_frame(stream, b"f" * 65536)
        rogue.ws.settimeout(10)
        for _ in range(512):  # 32 MiB, eight times the router's per-stream limit
            rogue.ws.send_binary(chunk)
        reset = None
        deadline = 200
        while reset is None and deadline:
            deadline -= 1
            opcode, data = rogue.ws.recv_data()
            frame = v3.decode(data) if opcode == ABNF.OPCODE_BINARY else None
            if frame is not None and frame.type == v3.RST_STREAM and frame.stream_id == stream:
                reset = frame.rst_code()
        assert reset is not None and reset[0] == v3.RST_PROTOCOL_ERROR, reset
        grown = router.usage().rss - rss
        assert grown < 128 << 20, f"router RSS grew by {grown >> 20} MiB"
    finally:
        sock.close()


V1_ROGUES = [garbage_status, invalid_header, huge_head, frames_after_the_end, never_answers]
V3_ROGUES = V1_ROGUES + [ignores_flow_control]
CASES = ([pytest.param("1.0", r, id=f"v1-{r.__name__}") for r in V1_ROGUES] +
         [pytest.param("3.0", r, id=f"v3-{r.__name__}") for r in V3_ROGUES])


@pytest.mark.parametrize(("protocol", "behaviour"), CASES)
@pytest.mark.timeout(90)
def test_rogue_connector(rogue_router, protocol: str, behaviour: Callable[[Any, Rogue], None]):
    router, _ = rogue_router

    def one_rogue() -> None:
        rogue = Rogue(router, protocol)
        try:
            behaviour(router, rogue)
            serves(router)  # the healthy route on the same router
        finally:
            rogue.abort()
        wait_for(lambda: router.sockets("rogue") == 0, what="the rogue's socket gone")

    one_rogue()
    baseline = router.usage()
    for _ in range(3):
        one_rogue()
    assert router.alive()
    settled(router, baseline, f"three rogue connectors ({behaviour.__name__})")
