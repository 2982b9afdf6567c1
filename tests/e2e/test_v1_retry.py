"""A v1 socket that closes before any byte of the response (a peer closing an idle socket as
the request went out) costs an idempotent request nothing: the router sends it on another
socket within connector_max_wait, and counts the retry."""
from __future__ import annotations

import http.client
import logging
import socket

import pytest
import requests
from support import LOOPBACK, wait_for


def _send(router, method: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    head = f"{method} /flaky/x HTTP/1.1\r\nHost: a\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def _answer(sock: socket.socket, method: str = "GET") -> tuple[int, bytes]:
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    return resp.status, resp.read()


def _metric(router, name: str) -> str:
    text = requests.get(f"http://{LOOPBACK}:{router.registration_port}/metrics", timeout=10).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
@pytest.mark.parametrize("close", ["1000", "no close frame"])
def test_an_idempotent_request_is_retried_on_another_socket(router, fake_connector_factory,
                                                            caplog, method, close):
    caplog.set_level(logging.INFO, logger="crank_sync.access")
    first = fake_connector_factory(router, "flaky")
    sock = _send(router, method)
    try:
        first.recv_request()
        second = fake_connector_factory(router, "flaky")
        if close == "1000":
            first.close(1000)
        else:
            first.abort()
        head, _ = second.recv_request()
        assert head.startswith(f"{method} /flaky/x HTTP/1.1")
        second.send_head(200, "OK", (("Content-Length", "2"),))
        if method != "HEAD":
            second.send_body(b"ok")
        second.close(1000)
        assert _answer(sock, method) == (200, b"" if method == "HEAD" else b"ok")
    finally:
        sock.close()
    assert 'crank_retries_total{route="flaky"} 1.0' in _metric(router, "crank_retries_total")
    wait_for(lambda: any("retries=1" in r.getMessage() for r in caplog.records
                         if r.name == "crank_sync.access"),
             what="the access log line with retries=1")


def test_a_request_with_a_body_is_not_retried(router, fake_connector_factory):
    first = fake_connector_factory(router, "flaky")
    sock = _send(router, "PUT", b"payload")
    try:
        first.recv_request()
        second = fake_connector_factory(router, "flaky")
        first.close(1000)
        status, _ = _answer(sock, "PUT")
        assert status == 502
        second.ws.settimeout(0.5)
        with pytest.raises(Exception):  # noqa: B017 - nothing arrives: the socket times out
            second.ws.recv()
    finally:
        sock.close()


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_non_idempotent_request_is_not_retried(router, fake_connector_factory, method):
    first = fake_connector_factory(router, "flaky")
    sock = _send(router, method)
    try:
        first.recv_request()
        fake_connector_factory(router, "flaky")
        first.close(1000)
        assert _answer(sock, method)[0] == 502
    finally:
        sock.close()
    assert 'crank_retries_total{route="flaky"}' not in _metric(router, "crank_retries_total")


def test_a_connector_that_answers_1011_is_not_retried(router, fake_connector_factory):
    first = fake_connector_factory(router, "flaky")
    sock = _send(router, "GET")
    try:
        first.recv_request()
        fake_connector_factory(router, "flaky")
        first.close(1011, "target failed")
        assert _answer(sock)[0] == 502
    finally:
        sock.close()
    assert 'crank_retries_total{route="flaky"}' not in _metric(router, "crank_retries_total")
