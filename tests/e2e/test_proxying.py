"""Requests and responses pass through router and connector unchanged, bodies byte for byte."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
from support import (
    CHUNKED_PARTS,
    GZIP_BODY,
    LOOPBACK,
    ResponseReader,
    both_protocols,
    client_url,
    deterministic_bytes,
    sha256,
)

pytestmark = both_protocols


def http_conn(router) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=10)


def test_get_fixed_size_body(router, svc, session):
    resp = session.get(client_url(router, "/svc/bytes/12345?seed=7"), timeout=10)
    assert resp.status_code == 200
    assert resp.content == deterministic_bytes(12345, 7)
    assert resp.headers["Content-Length"] == "12345"


def test_get_chunked_body(router, svc):
    conn = http_conn(router)
    try:
        conn.request("GET", "/svc/chunked")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert body == b"".join(CHUNKED_PARTS)
    # the target gave no Content-Length, so the router chunks for an HTTP/1.1 client
    assert resp.getheader("Content-Length") is None
    assert resp.getheader("Transfer-Encoding", "").lower() == "chunked"


def test_post_100kb_echo(router, target, svc, session):
    payload = deterministic_bytes(100 * 1024, 3)
    resp = session.post(client_url(router, "/svc/echo"), data=payload, timeout=10)
    assert resp.status_code == 200
    assert resp.content == payload
    assert resp.headers["X-Echo-Method"] == "POST"
    rec = target.received_for("/svc/echo")[-1]
    assert rec.body_len == len(payload)


def test_chunked_post_body(router, target, svc, session):
    parts = [b"alpha-" * 100, b"", b"beta" * 3000, b"gamma\n"]

    def gen():
        yield from parts

    resp = session.post(client_url(router, "/svc/echo"), data=gen(), timeout=10)
    assert resp.status_code == 200
    assert resp.content == b"".join(parts)
    rec = target.received_for("/svc/echo")[-1]
    assert rec.body_len == len(b"".join(parts))


def test_ten_concurrent_uploads(router, svc):
    import requests

    results: dict[int, object] = {}

    def upload(i: int) -> None:
        payload = deterministic_bytes(200 * 1024 + i, 100 + i)
        try:
            with requests.Session() as s:
                s.trust_env = False
                r = s.post(client_url(router, "/svc/sha256"), data=payload, timeout=30)
            results[i] = (r.status_code, r.json(), sha256(payload), len(payload))
        except Exception as err:  # reported below
            results[i] = err

    threads = [
        threading.Thread(target=upload, args=(i,), name=f"test-upload-{i}") for i in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert len(results) == 10, f"only {len(results)} uploads finished"
    for i, result in sorted(results.items()):
        assert not isinstance(result, Exception), f"upload {i} failed: {result!r}"
        status, answer, digest, length = result
        assert status == 200
        assert answer == {"length": length, "sha256": digest}


def test_5mb_download_byte_exact(router, svc, session):
    size = 5 * 1024 * 1024
    resp = session.get(client_url(router, f"/svc/bytes/{size}?seed=11"), timeout=30)
    assert resp.status_code == 200
    assert len(resp.content) == size
    assert sha256(resp.content) == sha256(deterministic_bytes(size, 11))


def test_5mb_upload_byte_exact(router, target, svc, session):
    payload = deterministic_bytes(5 * 1024 * 1024, 12)
    resp = session.post(client_url(router, "/svc/sha256"), data=payload, timeout=30)
    assert resp.status_code == 200
    assert resp.json() == {"length": len(payload), "sha256": sha256(payload)}


def test_head_has_headers_but_no_body_and_connection_is_reusable(router, svc):
    conn = http_conn(router)
    try:
        conn.request("HEAD", "/svc/bytes/1000")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Length") == "1000"
        assert resp.read() == b""
        # a body wrongly sent after the HEAD response would corrupt this second exchange
        conn.request("GET", "/svc/bytes/10?seed=1")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == deterministic_bytes(10, 1)
    finally:
        conn.close()


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_statuses(router, svc, code):
    conn = http_conn(router)
    try:
        conn.request("GET", f"/svc/status/{code}")
        resp = conn.getresponse()
        assert resp.status == code
        assert resp.read() == b""
        if code == 304:
            assert resp.getheader("ETag") == '"v1"'
        conn.request("GET", "/svc/bytes/5?seed=2")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == deterministic_bytes(5, 2)
    finally:
        conn.close()


def test_duplicate_set_cookie_headers_kept(router, svc):
    conn = http_conn(router)
    try:
        conn.request("GET", "/svc/cookies")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert resp.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]


def test_gzip_body_passes_untouched(router, svc, session):
    resp = session.get(
        client_url(router, "/svc/gzip"), headers={"Accept-Encoding": "gzip"}, stream=True,
        timeout=10
    )
    try:
        raw = resp.raw.read(decode_content=False)
    finally:
        resp.close()
    assert resp.status_code == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert raw == GZIP_BODY


def test_keep_alive_several_requests_on_one_connection(router, target, svc):
    conn = http_conn(router)
    try:
        conn.connect()
        first_sock = conn.sock
        for i in range(5):
            payload = b"request %d " % i * 100
            conn.request("POST", f"/svc/echo?i={i}", body=payload)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == payload
            conn.request("GET", f"/svc/bytes/{100 + i}?seed={i}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == deterministic_bytes(100 + i, i)
            assert conn.sock is first_sock, "router closed a keep-alive connection"
    finally:
        conn.close()
    assert len(target.received_for("/svc/")) == 10


def test_expect_100_continue(router, target, svc):
    payload = b"expect-continue body " * 500
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(
            b"POST /svc/echo HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Expect: 100-continue\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload)
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            data = sock.recv(1)
            assert data, "connection closed before 100 Continue"
            interim += data
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(payload)
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        body = resp.read()
    finally:
        sock.close()
    assert resp.status == 200
    assert body == payload
    rec = target.received_for("/svc/echo")[-1]
    assert not rec.has_header("Expect"), rec.headers


def test_http10_client_gets_close_delimited_body_not_chunked(router, svc):
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /svc/chunked HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"200"
    assert b"transfer-encoding" not in head.lower()
    assert body == b"".join(CHUNKED_PARTS)


def test_pipelined_requests_answered_in_order(router, svc):
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(
            b"GET /svc/bytes/5?seed=1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /svc/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nping"
            b"GET /svc/bytes/7?seed=2 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        reader = ResponseReader(sock)
        bodies = []
        for method in ("GET", "POST", "GET"):
            resp = reader.next(method)
            assert resp.status == 200
            bodies.append(resp.read())
    finally:
        sock.close()
    assert bodies == [deterministic_bytes(5, 1), b"ping", deterministic_bytes(7, 2)]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_reach_the_target(router, target, svc, method):
    conn = http_conn(router)
    try:
        conn.request(method, "/svc/echo", body=b"method body")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert resp.getheader("X-Echo-Method") == method
    assert body == b"method body"
    assert [r.method for r in target.received] == [method]


@pytest.mark.parametrize("code", [201, 302, 418, 422, 599])
def test_status_codes_pass_through(router, svc, code):
    conn = http_conn(router)
    try:
        conn.request("GET", f"/svc/status/{code}")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == code
    assert body == b"status %d\n" % code


def test_redirect_is_not_followed(router, target, svc):
    conn = http_conn(router)
    try:
        conn.request("GET", "/svc/redirect")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 302
    assert resp.getheader("Location") == "/svc/bytes/1"
    assert [r.path for r in target.received] == ["/svc/redirect"]


def test_large_response_header_passes(router, svc):
    """30,000 characters: more than one v3 HEADER frame (16,000 characters each)."""
    conn = http_conn(router)
    try:
        conn.request("GET", "/svc/bigheader/30000")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert resp.getheader("X-Big") == "b" * 30000


def test_unread_body_of_rejected_request_is_not_a_second_request(router, target, svc):
    """A 404 answered without reading the body must not let the body run as a request."""
    smuggled = b"GET /svc/headers/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(
            b"POST /nowhere/x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
            + smuggled
            + b"GET /svc/headers/legit HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        reader = ResponseReader(sock)
        resp = reader.next("POST")
        assert resp.status == 404
        resp.read()
        try:
            second = reader.next("GET")
            second_body = second.read()
        except (http.client.RemoteDisconnected, ConnectionError):
            second_body = None  # closing the connection after the 404 is fine too
    finally:
        sock.close()
    if second_body is not None:
        assert json.loads(second_body)["path"] == "/svc/headers/legit"
    assert target.received_for("/svc/headers/smuggled") == []
