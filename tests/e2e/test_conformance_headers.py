"""Header behaviour as mu-cranker-router has it: forwarding headers, Host, Server, reason
phrases. A real router, a real connector and the conftest target, or a fake connector."""
from __future__ import annotations

import http.client
import socket
from typing import Any

import pytest
import requests
from support import LOOPBACK, both_protocols


def _get(router: Any, path: str, headers: dict[str, str] | None = None) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"http://{LOOPBACK}:{router.http_port}{path}", headers=headers, timeout=20)


@both_protocols
def test_the_targets_server_header_is_hidden_by_default(router, target, connector_factory):
    connector_factory(target, route="svc")
    resp = _get(router, "/svc/bytes/10")
    assert resp.status_code == 200
    assert "Server" not in resp.headers, resp.headers


@pytest.mark.parametrize("router", [{"proxy_server_header": True}], indirect=True)
def test_proxy_server_header_keeps_it(router, target, connector_factory):
    connector_factory(target, route="svc")
    resp = _get(router, "/svc/bytes/10")
    assert resp.headers.get("Server", "").startswith("BaseHTTP"), resp.headers


@pytest.mark.parametrize("router", [{"proxy_host_header": False}], indirect=True)
@both_protocols
def test_without_proxy_host_header_the_target_sees_its_own_authority(router, target,
                                                                      connector_factory):
    connector_factory(target, route="svc")
    assert _get(router, "/svc/bytes/1", {"Host": "public.example"}).status_code == 200
    seen = target.received_for("/svc/bytes/1")[-1]
    assert seen.header_values("Host") == [target.url.split("//", 1)[1]]
    assert "host=public.example" in seen.header_values("Forwarded")[-1]


@pytest.mark.parametrize("router", [{"discard_client_forwarded": True}], indirect=True)
@both_protocols
def test_discard_client_forwarded_drops_every_forwarding_header(router, target,
                                                                connector_factory):
    connector_factory(target, route="svc")
    spoofed = {"Forwarded": "for=6.6.6.6", "X-Forwarded-For": "6.6.6.6",
               "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
               "X-Forwarded-Port": "443"}
    assert _get(router, "/svc/bytes/2", spoofed).status_code == 200
    seen = target.received_for("/svc/bytes/2")[-1]
    for name in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"):
        assert not seen.has_header(name), (name, seen.headers)
    forwarded = seen.header_values("Forwarded")
    assert len(forwarded) == 1 and "6.6.6.6" not in forwarded[0]
    assert forwarded[0].startswith("for=127.0.0.1;")


@both_protocols
def test_a_load_balancers_x_forwarded_for_becomes_forwarded_before_ours(router, target,
                                                                        connector_factory):
    connector_factory(target, route="svc")
    lb = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "shop.example"}
    assert _get(router, "/svc/bytes/3", lb).status_code == 200
    seen = target.received_for("/svc/bytes/3")[-1]
    forwarded = seen.header_values("Forwarded")
    assert forwarded[0] == "for=203.0.113.9;host=shop.example;proto=https"
    assert forwarded[1].startswith("for=127.0.0.1;")
    assert seen.header_values("X-Forwarded-For") == ["203.0.113.9"]


@pytest.mark.parametrize("reason, shown", [("200", "OK"), ("", "OK"), ("Fine", "Fine")])
def test_a_numeric_or_empty_reason_phrase_is_replaced(router, fake_connector_factory, reason,
                                                      shown):
    fake = fake_connector_factory(router, "odd")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /odd/x HTTP/1.1\r\nHost: a\r\n\r\n")
        fake.recv_request()
        fake.send_text(f"HTTP/1.1 200 {reason}\nContent-Length:2\n")
        fake.send_body(b"ok")
        fake.close(1000)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert (resp.status, resp.reason, resp.read()) == (200, shown, b"ok")
    finally:
        sock.close()
