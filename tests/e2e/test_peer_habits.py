"""Loose habits of other Cranker peers, each against a scripted peer over real sockets.

The router, against fake connectors (websocket-client, frames written through its public
``send_frame``):

* v1 response heads: bare ``\\n`` line ends with ``Name:value`` (no space), a status line
  without a reason, a head without its final newline, ``HTTP/1.1 200`` alone, ``\\r\\n`` line
  ends closed by a blank line;
* a v1 response head and body sent as fragmented websocket messages (continuation frames),
  and the same for v3 HEADER and DATA messages;
* a registration at a bare ``/register`` (or ``/register/``) without any query parameters: the
  router accepts it and names the instance ``unknown-<address>``.

Our connector, against a scripted router: a v1 request with ``\\r\\n`` line ends, a v1
request whose head, body and end marker are fragmented messages, and v3 HEADER and DATA
messages fragmented (one head with ``\\r\\n`` line ends).

Habits already covered elsewhere, not repeated here: ``\\r\\n`` with a space after the colon,
reason ``TODO`` and crank4py's ``<METHOD> <path>`` line (``test_connector_failures.py::
test_lenient_response_head_parsing``); a close without a code after a complete response
(``test_connector_failures.py::test_close_1005_after_complete_response_counts_as_normal``;
here only the same close before any response);
``/register`` without the slash but with a query (``test_registration.py::
test_register_without_trailing_slash``); a router closing without a code
(``test_connector_v1_wire.py::test_close_right_after_the_marker_cancels[no-code]``); the
codec tables in ``tests/protocol/test_v1.py``; fragment reassembly in
``tests/wire/test_frames.py`` and ``tests/connector/test_frames.py``.
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import pytest
import requests
import websocket
from support import (
    LOOPBACK,
    ResponseReader,
    ScriptedRouter,
    deterministic_bytes,
    receive_until_closed,
    wait_for,
    ws_frame,
)
from websocket import ABNF

from crank_sync import Connector
from crank_sync.protocol import v3

TEXT, BINARY, CONT = 0x1, 0x2, 0x0


class BackgroundRequest:
    """A client request on its own thread, so the test can drive the fake connector."""

    def __init__(self, router: Any, method: str, path: str, **kwargs: Any) -> None:
        self.result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(router, method, path, kwargs),
                                        name="test-background-request")
        self._thread.start()

    def _run(self, router: Any, method: str, path: str, kwargs: dict) -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                self.result["resp"] = s.request(
                    method, f"http://{LOOPBACK}:{router.http_port}{path}", timeout=30, **kwargs)
        except Exception as err:  # noqa: BLE001 - the test inspects it
            self.result["error"] = err

    def response(self, timeout: float = 30.0) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "client request did not finish"
        assert "resp" in self.result, f"client request failed: {self.result.get('error')!r}"
        return self.result["resp"]


def send_fragmented(ws: Any, opcode: int, parts: list[bytes]) -> None:
    """One websocket message sent as ``len(parts)`` frames: the first with ``opcode``, the
    rest continuation frames, FIN only on the last."""
    for i, part in enumerate(parts):
        frame = ABNF.create_frame(part, opcode if i == 0 else ABNF.OPCODE_CONT,
                                  fin=int(i == len(parts) - 1))
        ws.send_frame(frame)


# --------------------------------------------------------------------------- v1 response heads


HEADS = [
    pytest.param("HTTP/1.1 200 OK\nContent-Type:text/plain\nX-Habit:bare-lf\n", 200,
                 {"Content-Type": "text/plain", "X-Habit": "bare-lf"}, id="bare-lf-no-space"),
    pytest.param("HTTP/1.1 201\nX-Habit:no-reason\n", 201, {"X-Habit": "no-reason"},
                 id="no-reason"),
    pytest.param("HTTP/1.1 202 Accepted\nX-Habit:no-final-newline", 202,
                 {"X-Habit": "no-final-newline"}, id="no-final-newline"),
    pytest.param("HTTP/1.1 200", 200, {}, id="status-code-only"),
    pytest.param("HTTP/1.1 203\r\nX-Habit:crlf\r\nX-Other:2\r\n\r\n", 203,
                 {"X-Habit": "crlf", "X-Other": "2"}, id="crlf-blank-line-no-reason"),
]


@pytest.mark.parametrize(("head", "status", "headers"), HEADS)
def test_v1_response_head_habits(router, fake_connector_factory, head, status, headers):
    fake = fake_connector_factory(router, "habit")
    client = BackgroundRequest(router, "GET", "/habit/x")
    fake.recv_request()
    fake.send_text(head)
    fake.send_body(b"habit body")
    fake.close(1000)
    resp = client.response()
    assert resp.status_code == status
    for name, value in headers.items():
        assert resp.headers.get(name) == value, (name, dict(resp.headers))
    assert resp.content == b"habit body"


def test_v1_response_head_and_body_as_fragmented_messages(router, fake_connector_factory):
    fake = fake_connector_factory(router, "frag")
    client = BackgroundRequest(router, "GET", "/frag/x")
    fake.recv_request()
    head = b"HTTP/1.1 200 OK\nContent-Type:text/plain\nX-Fragmented:yes\n"
    send_fragmented(fake.ws, ABNF.OPCODE_TEXT, [head[:5], head[5:30], head[30:]])
    body = deterministic_bytes(70_000, 11)
    send_fragmented(fake.ws, ABNF.OPCODE_BINARY, [body[:1], body[1:40_000], b"", body[40_000:]])
    send_fragmented(fake.ws, ABNF.OPCODE_BINARY, [b"tail", b"!"])
    fake.close(1000)
    resp = client.response()
    assert resp.status_code == 200
    assert resp.headers["X-Fragmented"] == "yes"
    assert resp.content == body + b"tail!"


def test_v1_close_without_a_code_before_any_response_is_502(router, fake_connector_factory):
    """1005 counts as 1000, and 1000 with no response at all is the empty-200 bug: 502.
    (A POST, which the router does not retry on another socket as it would a GET.)"""
    fake = fake_connector_factory(router, "nocode")
    client = BackgroundRequest(router, "POST", "/nocode/x", data=b"not retried")
    assert fake.recv_request()[1] == b"not retried"
    fake.close_without_code()
    assert client.response().status_code == 502


# --------------------------------------------------------------------------- v3 fragments


def test_v3_header_and_data_as_fragmented_messages(router):
    ws = websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/register/"
        "?connectorInstanceID=frag-v3&componentName=fake-v3",
        header=["Route: fragv3", "Sec-WebSocket-Protocol: cranker_3.0"], timeout=10)
    try:
        wait_for(lambda: router.idle_sockets("fragv3") >= 1, what="the v3 fake to register")
        client = BackgroundRequest(router, "GET", "/fragv3/x")
        opcode, data = ws.recv_data()
        assert opcode == ABNF.OPCODE_BINARY
        request = v3.decode(data)
        assert request.type == v3.HEADER and request.end_header, request
        sid = request.stream_id
        text = "HTTP/1.1 200 OK\nX-Fragmented:v3\nContent-Length:30000\n"
        (header,) = v3.header_frames(sid, text, end_stream=False)
        send_fragmented(ws, ABNF.OPCODE_BINARY, [header[:3], header[3:7], header[7:]])
        body = deterministic_bytes(30_000, 12)
        data_frame = v3.data_frame(sid, body, end_stream=True)
        send_fragmented(ws, ABNF.OPCODE_BINARY, [data_frame[:6], data_frame[6:9000],
                                                 data_frame[9000:]])
        resp = client.response()
        assert resp.status_code == 200
        assert resp.headers["X-Fragmented"] == "v3"
        assert resp.content == body
    finally:
        ws.close(timeout=2)


@pytest.mark.parametrize("ending", ["data-end-stream", "header-end-stream"])
def test_v3_close_right_after_the_last_frame_leaves_the_response_complete(router, caplog,
                                                                          ending):
    """asgi-cc closes its sockets (1011, a cancelled task) as soon as its last request is
    answered. The END_STREAM and the close arrive together: the response is complete, the
    client's connection stays open for its next request, and nothing is logged as aborted
    (the router used to fail on the WINDOW_UPDATE it could no longer send)."""
    caplog.set_level("WARNING", logger="crank_sync")
    ws = websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/register/"
        "?connectorInstanceID=closer-v3&componentName=fake-v3",
        header=["Route: lastv3", "Sec-WebSocket-Protocol: cranker_3.0"], timeout=10)
    client = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        wait_for(lambda: router.idle_sockets("lastv3") >= 1, what="the v3 fake to register")
        client.sendall(b"GET /lastv3/x HTTP/1.1\r\nHost: a\r\n\r\n")
        opcode, data = ws.recv_data()
        sid = v3.decode(data).stream_id
        if ending == "data-end-stream":
            messages = [*v3.header_frames(sid, "HTTP/1.1 200 OK\nContent-Length:5\n", False),
                        v3.data_frame(sid, b"hello", end_stream=True)]
        else:
            messages = v3.header_frames(sid, "HTTP/1.1 204 No Content\nX-A:1\n", True)
        close = ABNF.create_frame(struct.pack("!H", 1011) + b"cancelled", ABNF.OPCODE_CLOSE)
        # frames and close in one write, so the router reads the close before it acknowledges
        ws.sock.sendall(b"".join(ABNF.create_frame(m, ABNF.OPCODE_BINARY).format()
                                 for m in messages) + close.format())
        reader = ResponseReader(client)
        resp = reader.next()
        assert resp.status == (200 if ending == "data-end-stream" else 204)
        assert resp.read() == (b"hello" if ending == "data-end-stream" else b"")
        wait_for(lambda: router.idle_sockets("lastv3") == 0, what="the closed socket to go")
        client.sendall(b"GET /nowhere/x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert reader.next().status == 404  # the same client connection, still open
    finally:
        client.close()
        ws.shutdown()
    warnings = [r.getMessage() for r in caplog.records if "aborted" in r.getMessage()]
    assert warnings == []


# --------------------------------------------------------------------------- bare registration


@pytest.mark.parametrize("path", ["/register", "/register/"])
def test_registration_without_query_parameters(router, path):
    ws = websocket.create_connection(f"ws://{LOOPBACK}:{router.registration_port}{path}",
                                     header=["CrankerProtocol: 1.0", "Route: bare"], timeout=10)
    try:
        wait_for(lambda: router.idle_sockets("bare") >= 1, what="the bare registration")
        (sock,) = router.registry.snapshot()["bare"]["idle"]
        assert sock.connector_instance_id == f"unknown-{LOOPBACK}"
        assert sock.component_name == ""
        client = BackgroundRequest(router, "GET", "/bare/x?y=1")
        opcode, data = ws.recv_data()
        assert opcode == ABNF.OPCODE_TEXT
        assert data.decode().startswith("GET /bare/x?y=1 HTTP/1.1\n")
        ws.send("HTTP/1.1 200 OK\nContent-Length:4\n")
        ws.send_binary(b"bare")
        ws.close(timeout=2)
        resp = client.response()
        assert resp.status_code == 200
        assert resp.content == b"bare"
    finally:
        ws.shutdown()


# --------------------------------------------------------------------------- our connector


class _Exchange:
    """Writes ``frames`` (raw server frames) in one go, then records what the connector sends
    until the socket closes."""

    def __init__(self, frames: list[bytes]) -> None:
        self.wire = b"".join(frames)
        self.received: list[Any] = []
        self.close_code: int | None = None

    def __call__(self, ws: Any, sock: socket.socket) -> None:
        sock.sendall(self.wire)
        self.received, self.close_code = receive_until_closed(ws)


def _through_connector(frames: list[bytes], target: Any) -> _Exchange:
    exchange = _Exchange(frames)
    router = ScriptedRouter(exchange, name="scripted-habits-router")
    conn = Connector(target=target.url, route="svc", protocols=("1.0",), sliding_window=1,
                     routers=[router.url])
    conn.start()
    try:
        wait_for(router.done.is_set, what="the scripted exchange to end")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    return exchange


def _split_response(exchange: _Exchange) -> tuple[str, bytes]:
    texts = [m for m in exchange.received if isinstance(m, str)]
    body = b"".join(m for m in exchange.received if isinstance(m, bytes))
    assert len(texts) == 1, exchange.received
    return texts[0], body


def test_connector_takes_a_v1_request_with_crlf_line_ends(target):
    request = "GET /svc/bytes/3000?seed=4 HTTP/1.1\r\nHost: scripted\r\nX-Habit: crlf\r\n\r\n_2"
    exchange = _through_connector([ws_frame(TEXT, request.encode())], target)
    head, body = _split_response(exchange)
    assert head.startswith("HTTP/1.1 200"), head
    assert body == deterministic_bytes(3000, 4)
    assert exchange.close_code == 1000
    (rec,) = target.received_for("/svc/bytes/3000")
    assert rec.path == "/svc/bytes/3000?seed=4"
    assert rec.header_values("X-Habit") == ["crlf"]


def test_connector_takes_a_v1_request_as_fragmented_messages(target):
    body = deterministic_bytes(50_000, 5)
    head = f"POST /svc/echo HTTP/1.1\nHost:scripted\nContent-Length:{len(body)}\n\n_1".encode()
    frames = [
        ws_frame(TEXT, head[:4], fin=False), ws_frame(CONT, head[4:20], fin=False),
        ws_frame(CONT, head[20:]),
        ws_frame(BINARY, body[:10], fin=False), ws_frame(CONT, body[10:30_000], fin=False),
        ws_frame(CONT, body[30_000:]),
        ws_frame(TEXT, b"_", fin=False), ws_frame(CONT, b"3"),
    ]
    exchange = _through_connector(frames, target)
    text, echoed = _split_response(exchange)
    assert text.startswith("HTTP/1.1 200"), text
    assert echoed == body
    assert exchange.close_code == 1000
    (rec,) = target.received_for("/svc/echo")
    assert rec.body_len == len(body)


class _FragmentedV3Exchange:
    """Sends a GET whose head has ``\\r\\n`` line ends and a POST with a body, every v3 message
    fragmented over several websocket frames, and records the frames that come back until
    both responses ended."""

    GET_TEXT = "GET /svc/bytes/2000?seed=6 HTTP/1.1\r\nHost: scripted\r\n\r\n"
    POST_TEXT = "POST /svc/echo HTTP/1.1\nHost:scripted\nContent-Length:20000\n\n"
    BODY = deterministic_bytes(20_000, 13)

    def __init__(self) -> None:
        self.frames: list[v3.Frame] = []

    @staticmethod
    def _fragmented(message: bytes, cuts: tuple[int, ...]) -> bytes:
        edges = [0, *cuts, len(message)]
        parts = [message[a:b] for a, b in zip(edges, edges[1:], strict=False)]
        return b"".join(ws_frame(BINARY if i == 0 else CONT, part, fin=i == len(parts) - 1)
                        for i, part in enumerate(parts))

    def __call__(self, ws: Any, sock: socket.socket) -> None:
        (get_head,) = v3.header_frames(1, self.GET_TEXT, True)
        (post_head,) = v3.header_frames(3, self.POST_TEXT, False)
        sock.sendall(self._fragmented(get_head, (2, 6, 20))
                     + self._fragmented(post_head, (10,))
                     + self._fragmented(v3.data_frame(3, self.BODY), (3, 5000))
                     + self._fragmented(v3.data_frame(3, b"", end_stream=True), (1,)))
        ended: set[int] = set()
        while ended != {1, 3}:
            msg = ws.receive(timeout=10)
            if msg is None:
                break
            if isinstance(msg, bytes):
                frame = v3.decode(msg)
                self.frames.append(frame)
                if frame.type in (v3.HEADER, v3.DATA) and frame.end_stream:
                    ended.add(frame.stream_id)

    def response(self, stream_id: int) -> tuple[str, bytes]:
        mine = [f for f in self.frames if f.stream_id == stream_id]
        head = "".join(f.payload.decode() for f in mine if f.type == v3.HEADER)
        return head, b"".join(f.payload for f in mine if f.type == v3.DATA)


def test_v3_connector_takes_fragmented_messages_and_crlf_heads(target):
    exchange = _FragmentedV3Exchange()
    router = ScriptedRouter(exchange, subprotocols=["cranker_3.0"], name="scripted-habits-v3")
    conn = Connector(target=target.url, route="svc", protocols=("3.0",), v3_sockets=1,
                     routers=[router.url]).start()
    try:
        wait_for(router.done.is_set, what="both responses at the scripted router")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    head, body = exchange.response(1)
    assert head.startswith("HTTP/1.1 200"), head
    assert body == deterministic_bytes(2000, 6)
    head, body = exchange.response(3)
    assert head.startswith("HTTP/1.1 200"), head
    assert body == exchange.BODY
    (rec,) = target.received_for("/svc/bytes/2000")
    assert rec.header_values("Host") == ["scripted"]
