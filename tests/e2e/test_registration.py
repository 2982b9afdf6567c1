"""Registration and deregistration as seen by a scripted websocket peer."""

from __future__ import annotations

import threading

import pytest
import requests
import websocket
from support import LOOPBACK, FakeConnector, client_url, wait_for


def get_in_background(router, path: str, result: dict) -> threading.Thread:
    def run() -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                result["resp"] = s.get(client_url(router, path), timeout=30)
        except Exception as err:
            result["error"] = err

    t = threading.Thread(target=run, name="test-background-get")
    t.start()
    return t


def serve_one(fake: FakeConnector, body: bytes) -> str:
    head, _ = fake.recv_request()
    fake.send_head(200, "OK", (("Content-Length", str(len(body))),))
    fake.send_body(body)
    fake.close(1000)
    return head


def test_v1_upgrade_response_carries_cranker_protocol_header(router, fake_connector_factory):
    fake = fake_connector_factory(router, "hdr")
    assert fake.handshake_headers.get("crankerprotocol") == "1.0"


def test_register_without_trailing_slash(router, fake_connector_factory):
    fake = fake_connector_factory(router, "noslash", path="/register")
    result: dict = {}
    t = get_in_background(router, "/noslash/x", result)
    serve_one(fake, b"noslash")
    t.join(30)
    assert result["resp"].status_code == 200
    assert result["resp"].content == b"noslash"


def test_missing_route_header_means_catch_all(router, fake_connector_factory):
    fake = fake_connector_factory(router, None)
    assert router.idle_sockets("*") == 1
    result: dict = {}
    t = get_in_background(router, "/anything/x", result)
    head = serve_one(fake, b"caught")
    t.join(30)
    assert head.startswith("GET /anything/x HTTP/1.1\n")
    assert result["resp"].status_code == 200
    assert result["resp"].content == b"caught"


def test_subprotocol_negotiation_picks_v1_when_only_v1_offered(router, fake_connector_factory):
    fake = fake_connector_factory(
        router, "subproto", headers=["Route: subproto", "Sec-WebSocket-Protocol: cranker_1.0"]
    )
    assert fake.handshake_headers.get("sec-websocket-protocol") == "cranker_1.0"


def test_registration_without_any_protocol_is_refused(router):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        FakeConnector(router, "noproto", headers=["Route: noproto"])
    assert 400 <= info.value.status_code < 500
    assert router.idle_sockets("noproto") == 0


def test_deregister_closes_idle_sockets_with_1001(router, fake_connector_factory):
    a = fake_connector_factory(router, "dereg", instance_id="inst-a")
    b = fake_connector_factory(router, "dereg", instance_id="inst-a")
    other = fake_connector_factory(router, "dereg", instance_id="inst-b")
    assert router.idle_sockets("dereg") == 3
    dereg = websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/deregister/"
        "?connectorInstanceID=inst-a&componentName=fake",
        header=["Route: dereg", "CrankerProtocol: 1.0"],
        timeout=10,
    )
    try:
        assert a.wait_for_close_code() == 1001
        assert b.wait_for_close_code() == 1001
        opcode, frame = dereg.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1000
    finally:
        dereg.shutdown()
    wait_for(lambda: router.idle_sockets("dereg") == 1, what="only inst-b left")
    # the other instance still serves
    result: dict = {}
    t = get_in_background(router, "/dereg/x", result)
    serve_one(other, b"still here")
    t.join(30)
    assert result["resp"].content == b"still here"
