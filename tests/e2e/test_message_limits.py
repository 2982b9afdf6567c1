"""No websocket message crank_sync sends to a peer is over 16 KiB unless the peer said, in the
registration handshake, that it takes more (``CrankSync-Max-Message``).

crank4go's connector closes with 1009 above 16 KiB, the Go and JavaScript connectors above
32 KiB: a peer that announces nothing gets messages of at most 16 KiB, both ways, v1 and v3.
"""
from __future__ import annotations

import http.client
import socket
from typing import Any

import pytest
import requests
import websocket
from support import (
    LOOPBACK,
    ScriptedRouter,
    deterministic_bytes,
    receive_until_closed,
    wait_for,
)

from crank_sync import Connector
from crank_sync.protocol import v3
from crank_sync.protocol.limits import (
    DEFAULT_MESSAGE_LIMIT,
    MESSAGE_LIMIT_HEADER,
    peer_message_limit,
    pieces,
)

BODY = deterministic_bytes(200 * 1000, 7)
LIMIT = 16 * 1024  # crank4go's connector closes with 1009 above this



@pytest.mark.parametrize("announced, limit", [
    (None, LIMIT), ("", LIMIT), ("abc", LIMIT), ("-5", LIMIT), ("1024", LIMIT),
    ("65536", 65536), (" 65536 ", 65536), ("99999999999999", LIMIT),
    (str(1 << 30), 16 * 1024 * 1024),
])
def test_an_announced_limit_is_read_and_clamped(announced, limit):
    assert peer_message_limit(announced) == limit


def test_the_default_limit_is_crank4gos():
    assert DEFAULT_MESSAGE_LIMIT == LIMIT


def test_pieces_cut_at_the_limit_and_keep_every_byte():
    assert pieces(b"abc", 3) == [b"abc"]
    cut = pieces(BODY, LIMIT)
    assert b"".join(cut) == BODY
    assert max(len(p) for p in cut) == LIMIT


def test_v3_header_frames_of_non_ascii_text_stay_within_16_kib():
    text = "GET / HTTP/1.1\nX-Long:" + "\u00e9" * 20000 + "\n\n"
    frames = v3.header_frames(1, text, end_stream=True)
    assert max(len(f) for f in frames) <= LIMIT
    assert b"".join(f[6:] for f in frames).decode("utf-8") == text


def _post(router: Any, path: str, body: bytes) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body)
    return sock


def _register(router: Any, protocol: str) -> websocket.WebSocket:
    headers = ["Route: quiet", "CrankerProtocol: 1.0", f"Sec-WebSocket-Protocol: cranker_{protocol}"]
    return websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/register/?connectorInstanceID=q"
        "&componentName=q", header=headers, timeout=10)


def test_a_v1_peer_that_announces_nothing_gets_body_messages_of_16_kib(router):
    ws = _register(router, "1.0")
    wait_for(lambda: router.idle_sockets("quiet") >= 1, what="the quiet peer registered")
    assert ws.getheaders().get(MESSAGE_LIMIT_HEADER.lower()), "the router announces its limit"
    sock = _post(router, "/quiet/upload", BODY)
    try:
        sizes, body = [], b""
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT and data.endswith(b"_1")
        while True:
            opcode, data = ws.recv_data()
            sizes.append(len(data))
            if opcode == websocket.ABNF.OPCODE_TEXT:
                assert data == b"_3"
                break
            body += data
        assert body == BODY
        assert max(sizes) <= LIMIT, sizes
        ws.send("HTTP/1.1 204 No Content\n")
        ws.close(1000)
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        assert resp.status == 204
    finally:
        sock.close()
        ws.shutdown()


def test_a_v3_peer_that_announces_nothing_gets_messages_of_16_kib(router):
    ws = _register(router, "3.0")
    wait_for(lambda: router.idle_sockets("quiet") >= 1, what="the quiet v3 peer registered")
    sock = _post(router, "/quiet/upload", BODY)
    try:
        sizes, body = [], b""
        while True:
            opcode, data = ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY
            sizes.append(len(data))
            frame = v3.decode(data)
            if frame.type == v3.DATA:
                body += frame.payload
                if frame.payload:
                    ws.send_binary(v3.window_update_frame(frame.stream_id, len(frame.payload)))
                if frame.end_stream:
                    break
        assert body == BODY
        assert max(sizes) <= LIMIT, sizes
        ws.send_binary(v3.header_frames(frame.stream_id, "HTTP/1.1 204 No Content\n", True)[0])
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        assert resp.status == 204
    finally:
        sock.close()
        ws.close()


@pytest.mark.parametrize("protocol", ["1.0", "3.0"])
def test_our_connector_sends_a_quiet_router_messages_of_16_kib(target, protocol):
    """A router that announces nothing (a scripted simple-websocket one) gets a 200 KB
    response body in messages of at most 16 KiB."""
    received: list[Any] = []

    def script(ws: Any, sock: socket.socket) -> None:
        if protocol == "1.0":
            ws.send("GET /svc/bytes/200000?seed=7 HTTP/1.1\nHost:scripted\n\n_2")
            messages, _ = receive_until_closed(ws)
            received.extend(messages)
            return
        ws.send(v3.header_frames(1, "GET /svc/bytes/200000?seed=7 HTTP/1.1\nHost:s\n\n", True)[0])
        while True:
            msg = ws.receive(timeout=10)
            assert msg is not None, "no response from the connector"
            received.append(msg)
            frame = v3.decode(msg)
            if frame.type == v3.DATA and frame.payload:
                ws.send(v3.window_update_frame(1, len(frame.payload)))
            if frame.end_stream:
                return

    router = ScriptedRouter(script, subprotocols=[f"cranker_{protocol}"],
                            name="quiet-scripted-router")
    conn = Connector(target=target.url, route="svc", protocols=(protocol,), routers=[router.url])
    conn.start()
    try:
        wait_for(router.done.is_set, what="the scripted exchange to finish")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    binary = [m for m in received if isinstance(m, bytes)]
    if protocol == "1.0":
        body = b"".join(binary)
    else:
        body = b"".join(v3.decode(m).payload for m in binary if v3.decode(m).type == v3.DATA)
    assert body == deterministic_bytes(200000, 7)
    assert max(len(m) for m in received) <= LIMIT, [len(m) for m in received]


@pytest.mark.parametrize("cranker_protocols", [("1.0",), ("3.0",)], ids=["v1", "v3"])
def test_two_crank_sync_ends_agree_on_larger_messages(router, target, connector_factory):
    """Our connector announces what it takes; the router then sends it 64 KiB body messages
    (a 16 KiB cap costs bulk throughput: see README.rst, Performance)."""
    connector_factory(target, route="svc", sliding_window=1, v3_sockets=1)
    socks = router.registry.snapshot()
    registered = [s for by_kind in socks.values() for group in by_kind.values() for s in group]
    assert registered and all(s.message_limit > LIMIT for s in registered)
    with requests.post(f"http://{LOOPBACK}:{router.http_port}/svc/echo", data=BODY,
                       timeout=20) as resp:
        assert resp.status_code == 200 and resp.content == BODY
