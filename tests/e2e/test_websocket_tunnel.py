"""Websockets through the tunnel (docs/websocket-tunnel.rst): websocket-client as the browser,
a simple-websocket service, a real router and connector, over v1 and v3."""
from __future__ import annotations

import concurrent.futures
import logging
import socket
import struct
from typing import Any

import pytest
import requests
import websocket
from support import (
    LOOPBACK,
    V1,
    FakeConnector,
    admin_url,
    deterministic_bytes,
    http_get,
    wait_for,
)
from support.ws_service import WebSocketService

from crank_sync.protocol.tunnel import CAPABILITIES_HEADER

PROTOCOLS = [pytest.param(V1, id="v1"), pytest.param(("3.0",), id="v3")]


@pytest.fixture(params=PROTOCOLS)
def tunnel(request: pytest.FixtureRequest, router: Any, connector_factory: Any,
           service: WebSocketService) -> Any:
    """The router, with a connector of the parametrised protocol for ``service``."""
    connector_factory(service.url, protocols=request.param, sliding_window=2)
    return router


def ws_url(router: Any, path: str = "/svc/echo") -> str:
    return f"ws://{LOOPBACK}:{router.http_port}{path}"


def connect(router: Any, path: str = "/svc/echo", **kwargs: Any) -> websocket.WebSocket:
    return websocket.create_connection(ws_url(router, path), timeout=15, **kwargs)


def metrics(router: Any) -> str:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(admin_url(router, "/metrics"), timeout=15).text


def close_code(frame: websocket.ABNF) -> int:
    return int(struct.unpack("!H", frame.data[:2])[0])


def test_messages_both_ways_text_binary_and_10_mb(tunnel: Any) -> None:
    ws = connect(tunnel)
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send("")
        assert ws.recv() == ""
        big = deterministic_bytes(10 << 20, 7)
        ws.send_binary(big)
        assert ws.recv() == big
        for size in (1, 125, 126, 65535, 65536, 300_000):
            data = deterministic_bytes(size, size)
            ws.send_binary(data)
            assert ws.recv() == data
    finally:
        ws.close()


def test_the_service_sees_the_clients_handshake(tunnel: Any, service: WebSocketService) -> None:
    ws = connect(tunnel, "/svc/echo?room=7&x=%20y", subprotocols=["superchat", "chat"],
                 cookie="session=abc", header=["Authorization: Bearer t0k3n"])
    try:
        assert ws.getstatus() == 101
        assert ws.getsubprotocol() == "superchat"
        ws.send("x")
        assert ws.recv() == "x"
    finally:
        ws.close()
    (seen,) = service.seen.handshakes
    assert seen.path == "/svc/echo?room=7&x=%20y"
    assert seen.headers["upgrade"].lower() == "websocket"
    assert "upgrade" in seen.headers["connection"].lower()
    assert seen.headers["sec-websocket-protocol"] == "superchat,chat"
    assert seen.headers["cookie"] == "session=abc"
    assert seen.headers["authorization"] == "Bearer t0k3n"
    assert seen.headers["sec-websocket-version"] == "13"


def test_a_refusal_reaches_the_client(tunnel: Any) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(tunnel, "/svc/forbidden")
    assert info.value.status_code == 403
    assert info.value.resp_body == b"no websocket here\n"


def test_fragments_and_pings_pass_through(tunnel: Any) -> None:
    ws = connect(tunnel)
    try:
        ws.send_frame(websocket.ABNF.create_frame("frag", websocket.ABNF.OPCODE_TEXT, fin=0))
        ws.send_frame(websocket.ABNF.create_frame("men", websocket.ABNF.OPCODE_CONT, fin=0))
        ws.send_frame(websocket.ABNF.create_frame("ted", websocket.ABNF.OPCODE_CONT, fin=1))
        assert ws.recv() == "fragmented"
        ws.ping(b"are you there")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    finally:
        ws.close()


def test_close_codes_and_reasons_both_ways(tunnel: Any, service: WebSocketService) -> None:
    ws = connect(tunnel)
    ws.send("x")
    assert ws.recv() == "x"
    ws.close(status=4001, reason=b"client says bye")
    wait_for(lambda: service.seen.closes, what="the service to see the close")
    assert service.seen.closes == [(4001, "client says bye")]

    ws = connect(tunnel, "/svc/close/4002")
    try:
        ws.send("bye?")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert close_code(frame) == 4002 and frame.data[2:] == b"service says bye"
    finally:
        ws.shutdown()


def test_a_service_that_vanishes_closes_the_client(tunnel: Any) -> None:
    ws = connect(tunnel, "/svc/vanish")
    try:
        ws.send("go")
        ws.settimeout(10)
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            while True:
                ws.recv()
    finally:
        ws.shutdown()


def test_a_client_that_vanishes_closes_the_service(tunnel: Any, service: WebSocketService) -> None:
    ws = connect(tunnel)
    ws.send("x")
    assert ws.recv() == "x"
    wait_for(lambda: service.seen.open == 1, what="the service's websocket open")
    ws.sock.shutdown(socket.SHUT_RDWR)  # gone without a close frame
    ws.shutdown()
    wait_for(lambda: service.seen.open == 0, what="the service's websocket closed")
    assert service.seen.closes and service.seen.closes[0][0] != 1000


def test_concurrent_websockets_do_not_mix(router: Any, connector_factory: Any,
                                          service: WebSocketService) -> None:
    connector_factory(service.url, protocols=("3.0",), sliding_window=2)
    clients = [connect(router, f"/svc/echo?n={i}") for i in range(100)]
    try:
        def talk(i: int) -> None:
            for round_ in range(5):
                message = f"client {i} round {round_} " + "x" * (i * 37)
                clients[i].send(message)
                assert clients[i].recv() == message

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(talk, range(100)))
    finally:
        for ws in clients:
            ws.close()


@pytest.mark.parametrize("router", [{"websocket_idle_timeout": 1.0}], indirect=True)
def test_an_idle_websocket_is_closed_with_1001_at_both_ends(tunnel: Any,
                                                             service: WebSocketService) -> None:
    ws = connect(tunnel)
    try:
        ws.send("x")
        assert ws.recv() == "x"
        ws.settimeout(20)
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE and close_code(frame) == 1001
        wait_for(lambda: service.seen.closes, what="the service to see the idle close")
        assert service.seen.closes[0][0] == 1001
    finally:
        ws.shutdown()


def test_a_route_without_tunnelling_connectors_gets_501(router: Any, caplog: Any) -> None:
    fake = FakeConnector(router, "svc")  # a peer that never offered the capability
    try:
        assert CAPABILITIES_HEADER.lower() not in fake.handshake_headers  # nothing unasked
        wait_for(lambda: router.idle_sockets("svc") >= 1, what="the fake connector registered")
        with caplog.at_level(logging.INFO):
            with pytest.raises(websocket.WebSocketBadStatusException) as info:
                connect(router)
        assert info.value.status_code == 501
        assert b"carries websockets" in info.value.resp_body
        assert any("501" in r.getMessage() and "carries websockets" in r.getMessage()
                   for r in caplog.records)
        # an ordinary request still goes to it
    finally:
        fake.close()


def test_a_wsgi_connector_offers_no_tunnel(router: Any) -> None:
    """Not even when a listener's registration headers claim the capability."""
    from crank_sync import Connector, ConnectorListener

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain http\n"]

    class Claims(ConnectorListener):
        def registration_headers(self, router: str) -> dict[str, str]:
            return {CAPABILITIES_HEADER: "websocket"}

    conn = Connector(target=app, route="svc", listeners=[Claims()],
                     routers=[f"ws://{LOOPBACK}:{router.registration_port}"]).start()
    try:
        wait_for(lambda: router.idle_sockets("svc") >= 1, what="registration")
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            connect(router)
        assert info.value.status_code == 501
        resp = http_get(router, "/svc/x")
        assert (resp.status_code, resp.content) == (200, b"plain http\n")
    finally:
        assert conn.stop(timeout=10)


def test_metrics_and_access_log_count_websockets(tunnel: Any, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, logger="crank_sync.access"):
        ws = connect(tunnel)
        ws.send("x" * 1000)
        assert ws.recv() == "x" * 1000
        assert 'crank_websockets_open{route="svc"} 1.0' in metrics(tunnel)
        ws.close()
        wait_for(lambda: 'crank_websockets_open{route="svc"} 0.0' in metrics(tunnel),
                 what="the websocket counted closed")
        line = wait_for(lambda: next((r.getMessage() for r in caplog.records
                                      if r.name == "crank_sync.access"
                                      and "/svc/echo" in r.getMessage()), None),
                        what="the access log line")
    assert "status=101" in line and "outcome=ok" in line
    assert 'crank_websocket_duration_seconds_count{route="svc"} 1.0' in metrics(tunnel)


@pytest.mark.parametrize("protocols", PROTOCOLS)
def test_tls_on_every_leg(router_factory: Any, wss_connectors: Any, tmp_path: Any,
                          protocols: tuple[str, ...]) -> None:
    """wss from the client, wss registration, and an https service (TLS to it)."""
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK, "localhost")
    ca_file, cert_file, key_file = (tmp_path / "ca.pem", tmp_path / "cert.pem",
                                    tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    router = router_factory(tls_cert=str(cert_file), tls_key=str(key_file),
                            registration_tls_cert=str(cert_file),
                            registration_tls_key=str(key_file))
    service = WebSocketService(tls=(str(cert_file), str(key_file)))
    try:
        wss_connectors(f"wss://{LOOPBACK}:{router.registration_port}", service.url,
                       protocols=protocols, ca_file=str(ca_file), target_ca_file=str(ca_file))
        wait_for(lambda: router.idle_sockets("svc") >= 2, what="wss registration")
        context = ssl.create_default_context(cafile=str(ca_file))
        ws = websocket.create_connection(f"wss://{LOOPBACK}:{router.http_port}/svc/echo",
                                         timeout=15, sslopt={"context": context})
        try:
            big = deterministic_bytes(2 << 20, 3)
            for _ in range(3):
                ws.send_binary(big)
                assert ws.recv() == big
            ws.send("over tls")
            assert ws.recv() == "over tls"
        finally:
            ws.close()
        wait_for(lambda: service.seen.closes, what="the service to see the close")
        assert service.seen.closes[0][0] == 1000
    finally:
        service.stop()


@pytest.mark.parametrize("router", [{"idle_timeout": 1.0, "client_timeout": 1.0,
                                     "websocket_idle_timeout": 0}], indirect=True)
@pytest.mark.parametrize("protocols", PROTOCOLS)
def test_a_quiet_websocket_outlives_the_idle_timeouts(router: Any, connector_factory: Any,
                                                       service: WebSocketService,
                                                       protocols: tuple[str, ...]) -> None:
    """The router's and the connector's idle_timeout and client_timeout (1 s here) do not end
    a websocket; with websocket_idle_timeout 0 nothing does."""
    connector_factory(service.url, protocols=protocols, idle_timeout=1.0)
    ws = connect(router)
    try:
        ws.send("before")
        assert ws.recv() == "before"
        ws.settimeout(4.0)  # four idle timeouts: no close frame, no end of the connection
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        ws.settimeout(15)
        ws.send("after")
        assert ws.recv() == "after"
    finally:
        ws.close()


def test_at_a_router_without_the_extension_an_upgrade_is_an_ordinary_request(target: Any) -> None:
    """A router that did not accept the capability (a scripted one, as any other router): the
    connector replays even a request with Upgrade headers as plain HTTP, as it always did."""
    from support import ScriptedRouter, receive_until_closed, ws_frame

    from crank_sync import Connector

    request = ("GET /svc/headers HTTP/1.1\nHost:scripted\nConnection:Upgrade\n"
               "Upgrade:websocket\nSec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\n"
               "Sec-WebSocket-Version:13\n\n_2")
    seen: dict[str, Any] = {}

    def script(ws: Any, sock: socket.socket) -> None:
        sock.sendall(ws_frame(0x1, request.encode()))
        seen["received"], seen["code"] = receive_until_closed(ws)

    router = ScriptedRouter(script, name="scripted-router-no-extension")
    conn = Connector(target=target.url, route="svc", protocols=("1.0",), routers=[router.url])
    conn.start()
    try:
        wait_for(router.done.is_set, what="the scripted socket to close")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    head = seen["received"][0]
    assert isinstance(head, str) and head.startswith("HTTP/1.1 200"), seen
    assert seen["code"] == 1000
    (rec,) = target.received_for("/svc/headers")
    assert rec.method == "GET"


def test_an_extension_the_service_accepts_works_end_to_end(tunnel: Any) -> None:
    """permessage-deflate, offered by a raw client and accepted by the service: the 101 says so
    and the service's compressed frames arrive as it wrote them (nothing inflates them)."""
    import base64
    import os
    import zlib

    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((LOOPBACK, tunnel.http_port), timeout=15) as sock:
        sock.sendall((f"GET /svc/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      f"Upgrade: websocket\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode())
        reader = sock.makefile("rb")
        status = reader.readline()
        assert status.startswith(b"HTTP/1.1 101"), status
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
        mask = os.urandom(4)
        text = b"compress me " * 100
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        sock.sendall(bytes([0x81, 0x80 | 126]) + len(text).to_bytes(2, "big") + mask + masked)
        first, second = reader.read(2)
        assert first & 0x40, "the service's echo is compressed (RSV1)"
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(reader.read(2), "big")
        payload = reader.read(length)
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == text


@pytest.mark.parametrize("protocols", PROTOCOLS)
def test_a_router_that_stops_closes_its_websockets_with_1001(
        router_factory: Any, connector_factory: Any, service: WebSocketService,
        protocols: tuple[str, ...]) -> None:
    """Open websockets do not hold the drain up: both ends get 1001 and stop() is clean."""
    router = router_factory(drain_timeout=20.0)
    connector_factory(service.url, routers=[router], protocols=protocols)
    ws = connect(router)
    try:
        ws.send("x")
        assert ws.recv() == "x"
        assert router_factory.stop(router) is True  # drained: nothing was left in flight
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE and close_code(frame) == 1001
        assert frame.data[2:] == b"router stopping"
        wait_for(lambda: service.seen.closes, what="the service to see the close")
        assert service.seen.closes[0][0] == 1001
    finally:
        ws.shutdown()


def test_a_frame_sent_with_the_upgrade_head_is_not_lost(tunnel: Any) -> None:
    """A client that does not wait for the 101: its first frame, read by the router with the
    head, still reaches the service."""
    import base64
    import os

    key = base64.b64encode(os.urandom(16)).decode()
    mask, text = os.urandom(4), b"sent before the 101"
    frame = bytes([0x81, 0x80 | len(text)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(text))
    with socket.create_connection((LOOPBACK, tunnel.http_port), timeout=15) as sock:
        sock.sendall((f"GET /svc/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      f"Upgrade: websocket\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode() + frame)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 101")
        while reader.readline() not in (b"\r\n", b""):
            pass
        assert reader.read(2 + len(text)) == bytes([0x81, len(text)]) + text
