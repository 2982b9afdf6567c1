"""Requests the router must refuse itself, before any connector sees them."""

from __future__ import annotations

import http.client

import pytest
import requests
from support import LOOPBACK, raw_exchange


def test_trace_is_405(router, target, svc):
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=10)
    try:
        conn.request("TRACE", "/svc/headers/x")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 405
    assert target.received == []


def test_trace_on_registration_listener_is_405(router):
    status, _, _ = raw_exchange(
        router.registration_port,
        b"TRACE /register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        method="TRACE",
    )
    assert status == 405


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /svc/headers/x HTTP/1.1 extra\r\nHost: a\r\n\r\n", id="four-words"),
        pytest.param(b"GET /svc/headers/x HTTX/1.1\r\nHost: a\r\n\r\n", id="bad-version"),
        pytest.param(b"GET\r\nHost: a\r\n\r\n", id="method-only"),
        pytest.param(b"GET /svc/headers/x HTTP/1.1\r\nNo colon here\r\n\r\n", id="bad-header"),
    ],
)
def test_malformed_request_is_400(router, target, svc, request_bytes):
    status, _, _ = raw_exchange(router.http_port, request_bytes)
    assert status == 400
    assert target.received == []


def test_content_length_with_chunked_is_400(router, target, svc):
    request = (
        b"POST /svc/echo HTTP/1.1\r\nHost: a\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    status, _, _ = raw_exchange(router.http_port, request, method="POST")
    assert status == 400
    assert target.received == []


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1x", b"5, 6"])
def test_invalid_content_length_is_400(router, target, svc, value):
    request = b"POST /svc/echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello"
    status, _, _ = raw_exchange(router.http_port, request, method="POST")
    assert status == 400
    assert target.received == []


def test_router_serves_normally_after_bad_requests(router, svc):
    for _ in range(3):
        status, _, _ = raw_exchange(router.http_port, b"GET /svc/x HTTP/1.1 junk\r\n\r\n")
        assert status == 400
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{router.http_port}/svc/bytes/3", timeout=10)
    assert resp.status_code == 200
