"""How connector and target failures reach the client (the v1 close-code table)."""

from __future__ import annotations

import http.client
import logging
import socket
import threading

import pytest
import requests
from support import (
    DIE_MID_BODY_DECLARED,
    LOOPBACK,
    both_protocols,
    client_url,
    closed_port,
    deterministic_bytes,
    wait_for,
)


class BackgroundRequest:
    """A client request on its own thread, so the test can drive the fake connector."""

    def __init__(self, router, method: str, path: str, data: bytes | None = None) -> None:
        self.result: dict[str, object] = {}
        self._thread = threading.Thread(
            target=self._run, args=(router, method, path, data), name="test-background-request"
        )
        self._thread.start()

    def _run(self, router, method, path, data) -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                self.result["resp"] = s.request(method, client_url(router, path), data=data,
                                                timeout=30)
        except Exception as err:
            self.result["error"] = err

    def response(self, timeout: float = 30.0) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "client request did not finish"
        assert "resp" in self.result, f"client request failed: {self.result.get('error')!r}"
        return self.result["resp"]  # type: ignore[return-value]


@pytest.fixture
def healthy(router, target, connector_factory):
    """A real connector on route ``svc`` to prove the router still serves others."""
    return connector_factory(target, route="svc")


def assert_router_still_serves(router) -> None:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(client_url(router, "/svc/bytes/1000?seed=5"), timeout=10)
    assert resp.status_code == 200
    assert resp.content == deterministic_bytes(1000, 5)


def test_fake_connector_receives_bodyless_and_chunked_requests(router, fake_connector_factory):
    """No body: marker ``_2``. Chunked upload: de-chunked into binary messages, then ``_3``."""
    fake = fake_connector_factory(router, "fake")
    bg = BackgroundRequest(router, "GET", "/fake/nobody")
    head, body = fake.recv_request()
    assert fake.last_marker == "_2"
    assert head.startswith("GET /fake/nobody HTTP/1.1\n")
    assert body == b""
    fake.send_head(204, "No Content")
    fake.close(1000)
    assert bg.response().status_code == 204

    fake = fake_connector_factory(router, "fake")
    parts = [b"a" * 10, b"b" * 70000, b"c"]
    bg = BackgroundRequest(router, "POST", "/fake/chunked", iter(parts))
    head, body = fake.recv_request()
    assert fake.last_marker == "_1"
    assert body == b"".join(parts)
    fake.send_head(200, "OK", (("Content-Length", "2"),))
    fake.send_body(b"ok")
    fake.close(1000)
    assert bg.response().content == b"ok"


def test_fake_connector_receives_v1_request(router, fake_connector_factory):
    """The request text follows the wire contract (request line, headers, markers, body)."""
    fake = fake_connector_factory(router, "fake")
    payload = b"0123456789" * 100
    bg = BackgroundRequest(router, "POST", "/fake/a%20b?x=1", payload)
    head, body = fake.recv_request()
    fake.send_head(200, "OK", (("Content-Length", "4"),))
    fake.send_body(b"done")
    fake.close(1000)
    resp = bg.response()
    assert resp.status_code == 200
    assert resp.content == b"done"
    lines = head.split("\n")
    assert fake.last_marker == "_1"
    assert lines[0] == "POST /fake/a%20b?x=1 HTTP/1.1"
    assert lines[-1] == "", "head must end with a blank line before the marker"
    assert body == payload


@pytest.mark.parametrize("router", [{"idle_timeout": 1.0}], indirect=True)
def test_504_when_connector_never_answers(router, fake_connector_factory):
    fake = fake_connector_factory(router, "silent")
    bg = BackgroundRequest(router, "GET", "/silent/x")
    fake.recv_request()
    resp = bg.response()
    assert resp.status_code == 504


def router_logged(caplog, *words: str) -> bool:
    return any(r.name.startswith("crank_sync.router") and all(w in r.getMessage() for w in words)
               for r in caplog.records)


@both_protocols
def test_502_when_target_unreachable(router, connector_factory, session, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    connector_factory(f"http://{LOOPBACK}:{closed_port()}", route="deadtarget")
    resp = session.get(client_url(router, "/deadtarget/x"), timeout=20)
    assert resp.status_code == 502
    # the connector's reason reaches the client and the router's log line about the request
    assert "target failed: connection refused" in resp.text, resp.text
    rid = resp.headers["X-Request-Id"]
    assert router_logged(caplog, "502", rid, "target failed: connection refused")


def test_v1_close_reason_reaches_the_502_body_and_the_log(router, fake_connector_factory,
                                                         caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    fake = fake_connector_factory(router, "closer")
    bg = BackgroundRequest(router, "GET", "/closer/x")
    fake.recv_request()
    fake.close(1011, "database on fire")
    resp = bg.response()
    assert resp.status_code == 502
    assert "1011: database on fire" in resp.text, resp.text
    assert router_logged(caplog, "502", resp.headers["X-Request-Id"], "database on fire")


@pytest.mark.parametrize(
    ("close_code", "expected_status"),
    [(1011, 502), (1008, 400), (1000, 502), (4000, 502)],
)
def test_close_before_response_maps_to_status(
    router, fake_connector_factory, healthy, close_code, expected_status
):
    fake = fake_connector_factory(router, "closer")
    bg = BackgroundRequest(router, "GET", "/closer/x")
    fake.recv_request()
    fake.close(close_code)
    assert bg.response().status_code == expected_status
    assert_router_still_serves(router)


def test_socket_lost_before_response_is_502(router, fake_connector_factory, healthy):
    fake = fake_connector_factory(router, "lost")
    bg = BackgroundRequest(router, "GET", "/lost/x")
    fake.recv_request()
    fake.abort()
    assert bg.response().status_code == 502
    assert_router_still_serves(router)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00\x01binary before head", id="binary-before-head"),
        pytest.param("this is not an http response head\n", id="unparseable-head"),
        pytest.param("HTTP/1.1 abc Bad\n", id="non-numeric-status"),
    ],
)
def test_garbage_from_connector_is_502(router, fake_connector_factory, healthy, garbage):
    fake = fake_connector_factory(router, "garbage")
    bg = BackgroundRequest(router, "GET", "/garbage/x")
    fake.recv_request()
    if isinstance(garbage, bytes):
        fake.send_body(garbage)
    else:
        fake.send_text(garbage)
    try:
        assert bg.response().status_code == 502
    finally:
        fake.abort()
    assert_router_still_serves(router)


def test_lenient_response_head_parsing(router, fake_connector_factory):
    """Space after colon, CRLF, reason TODO, and a stray line without a colon are accepted."""
    fake = fake_connector_factory(router, "lenient")
    bg = BackgroundRequest(router, "GET", "/lenient/x")
    fake.recv_request()
    fake.send_text(
        "HTTP/1.1 201 TODO\r\nGET /lenient/x\r\nContent-Type: text/plain\r\nX-Lenient:  yes\r\n"
    )
    fake.send_body(b"lenient ")
    fake.send_body(b"")
    fake.send_body(b"body")
    fake.close(1000)
    resp = bg.response()
    assert resp.status_code == 201
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Lenient"] == "yes"
    assert resp.content == b"lenient body"


def test_close_1005_after_complete_response_counts_as_normal(router, fake_connector_factory):
    fake = fake_connector_factory(router, "nocode")
    bg = BackgroundRequest(router, "GET", "/nocode/x")
    fake.recv_request()
    fake.send_head(200, "OK", (("Content-Type", "text/plain"),))
    fake.send_body(b"complete")
    fake.close_without_code()
    resp = bg.response()
    assert resp.status_code == 200
    assert resp.content == b"complete"


@pytest.mark.parametrize("close_code", [1011, 1008])
def test_error_close_after_response_started_aborts_client(
    router, fake_connector_factory, healthy, close_code
):
    fake = fake_connector_factory(router, "midway")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /midway/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fake.recv_request()
        fake.send_head(200, "OK", (("Content-Length", "100000"),))
        fake.send_body(b"m" * 1000)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read(1000) == b"m" * 1000
        fake.close(close_code)
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        sock.close()
    assert_router_still_serves(router)


@both_protocols
def test_target_dying_mid_body_aborts_client(router, target, connector_factory):
    connector_factory(target, route="svc")
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        conn.request("GET", "/svc/die-mid-body")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError)) as info:
            resp.read()
    finally:
        conn.close()
    if isinstance(info.value, http.client.IncompleteRead):
        assert len(info.value.partial) < DIE_MID_BODY_DECLARED
    assert_router_still_serves(router)
    wait_for(lambda: router.idle_sockets("svc") >= 2, what="svc window restored")


@pytest.mark.parametrize("router", [{"idle_timeout": 1.0}], indirect=True)
def test_idle_timeout_after_response_started_aborts_client(router, fake_connector_factory):
    fake = fake_connector_factory(router, "stall")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    try:
        sock.sendall(b"GET /stall/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fake.recv_request()
        fake.send_head(200, "OK", (("Content-Length", "10000"),))
        fake.send_body(b"p" * 100)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        # the connector now stalls; after idle_timeout the router must abort, not hang
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        sock.close()
        fake.abort()


def test_hop_by_hop_response_headers_dropped(router, fake_connector_factory):
    """Headers from the connector's response that are hop-by-hop never reach the client."""
    fake = fake_connector_factory(router, "fakehop")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /fakehop/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fake.recv_request()
        fake.send_head(
            200,
            "OK",
            (
                ("Content-Length", "2"),
                ("Connection", "X-Resp-Hop"),
                ("X-Resp-Hop", "secret"),
                ("Keep-Alive", "timeout=99"),
                ("X-Resp-Kept", "yes"),
            ),
        )
        fake.send_body(b"ok")
        fake.close(1000)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        body = resp.read()
    finally:
        sock.close()
    assert resp.status == 200
    assert body == b"ok"
    assert resp.getheader("X-Resp-Hop") is None
    assert resp.getheader("Keep-Alive") is None
    assert resp.getheader("X-Resp-Kept") == "yes"
