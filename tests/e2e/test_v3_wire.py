"""Cranker v3 on the wire: subprotocol negotiation and a scripted multiplexing connector."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
import websocket
from support import LOOPBACK, FakeConnector, client_url, wait_for

DATA, HEADER, RST_STREAM, WINDOW_UPDATE = 0, 1, 3, 8
END_STREAM, END_HEADER = 1, 4


def frame(kind: int, flags: int, request_id: int, payload: bytes = b"") -> bytes:
    return bytes([kind, flags]) + request_id.to_bytes(4, "big", signed=True) + payload


class FakeV3Connector:
    """One v3 websocket, driven frame by frame."""

    def __init__(self, router, route: str, instance_id: str = "fake-v3") -> None:
        self.ws = websocket.create_connection(
            f"ws://{LOOPBACK}:{router.registration_port}/register/"
            f"?connectorInstanceID={instance_id}&componentName=fake-v3",
            header=[f"Route: {route}", "CrankerProtocol: 1.0"],
            subprotocols=["cranker_3.0", "cranker_1.0"],
            timeout=10,
        )
        self.subprotocol = self.ws.getsubprotocol()

    def recv_frame(self, timeout: float = 10.0) -> tuple[int, int, int, bytes]:
        self.ws.settimeout(timeout)
        while True:
            opcode, data = self.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                assert len(data) >= 6, f"short v3 frame {data!r}"
                rid = int.from_bytes(data[2:6], "big", signed=True)
                return data[0], data[1], rid, data[6:]
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise AssertionError(f"router closed the v3 socket: {data!r}")

    def recv_request(self) -> tuple[int, str]:
        """Wait for a bodyless request; returns (request id, header text)."""
        text = b""
        while True:
            kind, flags, rid, payload = self.recv_frame()
            if kind in (WINDOW_UPDATE, RST_STREAM):
                continue  # acknowledgements and resets of earlier streams
            assert kind == HEADER, f"expected HEADER, got type {kind}"
            text += payload
            if flags & END_HEADER:
                assert flags & END_STREAM, "a GET without body ends the stream on its HEADER"
                self.send(frame(WINDOW_UPDATE, 0, rid, len(text).to_bytes(4, "big")))
                return rid, text.decode("utf-8")

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
        self.ws.shutdown()


@pytest.fixture
def fake_v3_factory():
    fakes: list[FakeV3Connector] = []

    def make(router, route: str) -> FakeV3Connector:
        fake = FakeV3Connector(router, route)
        fakes.append(fake)
        wait_for(lambda: router.idle_sockets(route) >= 1, what=f"v3 fake registered on {route}")
        return fake

    yield make
    for fake in fakes:
        fake.close()


def background_get(router, path: str) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                result["resp"] = s.get(client_url(router, path), timeout=30)
        except Exception as err:
            result["error"] = err

    t = threading.Thread(target=run, name="test-v3-client")
    t.start()
    return t, result


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ("cranker_3.0, cranker_1.0", "cranker_3.0"),
        ("cranker_1.0, cranker_3.0", "cranker_1.0"),
    ],
)
def test_router_picks_first_supported_subprotocol(router, offered, chosen):
    fake = FakeConnector(
        router,
        "neg",
        headers=["Route: neg", "CrankerProtocol: 1.0", f"Sec-WebSocket-Protocol: {offered}"],
    )
    try:
        assert fake.handshake_headers.get("sec-websocket-protocol") == chosen
    finally:
        fake.abort()


@pytest.mark.parametrize(
    ("protocols", "first_offered"), [(("3.0", "1.0"), "cranker_3.0"), (("1.0",), "cranker_1.0")]
)
def test_connector_offers_protocols_in_preference_order(
    target, connector_factory, protocols, first_offered
):
    """A listener that records the connector's upgrade request and refuses it."""
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    class FakeRouter:
        registration_port = port

    try:
        connector_factory(
            target, route="svc", routers=[FakeRouter()], protocols=protocols, wait=False
        )
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                assert chunk, "connector closed before sending its handshake"
                head += chunk
            conn.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
    finally:
        listener.close()
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers.get("route") == "svc"
    assert headers.get("crankerprotocol") == "1.0"
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    assert offered[0] == first_offered, headers


def test_v3_round_trip_with_window_updates(router, fake_v3_factory):
    fake = fake_v3_factory(router, "v3fake")
    assert fake.subprotocol == "cranker_3.0"
    t, result = background_get(router, "/v3fake/a%20b?q=1")
    rid, text = fake.recv_request()
    assert rid >= 1
    assert text.startswith("GET /v3fake/a%20b?q=1 HTTP/1.1\n")
    assert text.endswith("\n\n")
    head = b"HTTP/1.1 200 OK\nContent-Type:text/plain\nX-V3:yes\n\n"
    fake.send(frame(HEADER, END_HEADER, rid, head))
    fake.send(frame(DATA, 0, rid, b"hello "))
    fake.send(frame(DATA, 0, rid, b"v3"))
    fake.send(frame(DATA, END_STREAM, rid, b""))
    t.join(30)
    assert "resp" in result, result
    resp = result["resp"]
    assert resp.status_code == 200
    assert resp.headers["X-V3"] == "yes"
    assert resp.content == b"hello v3"

    acknowledged = 0
    while acknowledged < len(head) + len(b"hello v3"):
        kind, _, wrid, payload = fake.recv_frame()
        if kind == WINDOW_UPDATE and wrid == rid:
            acknowledged += int.from_bytes(payload[:4], "big", signed=True)
    assert acknowledged == len(head) + len(b"hello v3")


def test_v3_rst_before_response_is_502_and_socket_keeps_serving(router, fake_v3_factory):
    fake = fake_v3_factory(router, "v3rst")
    t, result = background_get(router, "/v3rst/first")
    rid, _ = fake.recv_request()
    fake.send(frame(RST_STREAM, 0, rid, (1011).to_bytes(4, "big") + b"target failed"))
    t.join(30)
    assert result["resp"].status_code == 502

    # v3 sockets stay in the pool: the same socket carries the next request
    t, result = background_get(router, "/v3rst/second")
    rid2, text = fake.recv_request()
    assert rid2 != rid
    assert text.startswith("GET /v3rst/second HTTP/1.1\n")
    fake.send(frame(HEADER, END_HEADER | END_STREAM, rid2, b"HTTP/1.1 204 No Content\n\n"))
    t.join(30)
    assert result["resp"].status_code == 204


def test_v3_client_disconnect_sends_rst_stream(router, fake_v3_factory):
    fake = fake_v3_factory(router, "v3gone")
    client = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        client.sendall(b"GET /v3gone/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        rid, _ = fake.recv_request()
        fake.send(frame(HEADER, END_HEADER, rid, b"HTTP/1.1 200 OK\nContent-Type:text/plain\n\n"))
        fake.send(frame(DATA, 0, rid, b"x" * 1000))
        received = b""
        while b"x" * 100 not in received:
            chunk = client.recv(65536)
            assert chunk, "router closed the client connection early"
            received += chunk
    finally:
        client.close()

    # keep the stream busy so the router writes to the dead client and notices it is gone
    rst_code = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fake.ws.settimeout(5)
        fake.send(frame(DATA, 0, rid, b"x" * 1000))
        try:
            kind, _, frid, payload = fake.recv_frame(timeout=0.05)
        except websocket.WebSocketTimeoutException:
            continue
        if kind == RST_STREAM and frid == rid:
            rst_code = int.from_bytes(payload[:4], "big", signed=True)
            break
    assert rst_code == 1
