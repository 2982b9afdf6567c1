"""Request heads the router must refuse as RFC 9112 asks, before any connector sees them.

Each shape goes through a real router, a real connector and a real target over a raw socket:
it gets 400 with ``Connection: close`` and a log line naming the reason and the client, the
connection is closed, and the target's list of received requests holds only the good request
sent afterwards on a fresh connection.
"""

from __future__ import annotations

import logging
import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import (
    LOOPBACK,
    raw_exchange,
    read_until_closed,
    single_protocols,
    wait_for,
)

pytestmark = single_protocols


@pytest.fixture
def other(router, target, connector_factory):
    """A second route on the same target, for the dot-segment shapes to escape to."""
    return connector_factory(target, route="other")


def exchange_until_closed(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data`` and read until the router closes: (everything read, closed?)."""
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the router may answer and close before reading everything
        return read_until_closed(sock, timeout)
    finally:
        sock.close()


def bad_requests_counted(router) -> float:
    """crank_errors_total{kind="BadRequest"} from the router's /metrics."""
    with requests.Session() as s:
        s.trust_env = False
        text = s.get(f"http://{LOOPBACK}:{router.registration_port}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "crank_errors_total" and sample.labels.get("kind") == "BadRequest")


def head_of(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), raw[:300]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


AFTER = b"GET /svc/echo/SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n"

SHAPES = [
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nX-A: a\rTransfer-Encoding: chunked"
                 b"\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + AFTER, "bare CR", id="bare-cr"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                 b"0\r\n\r\n" + AFTER, "folding", id="obs-fold-transfer-encoding"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nConnection:\r\n\tclose\r\n\r\n",
                 "folding", id="obs-fold-connection"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "2 Host",
                 id="two-hosts"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nX-A: 1\r\n\r\n", "no Host", id="no-host"),
    pytest.param(b"GET /svc/../other/echo/M HTTP/1.1\r\nHost: a\r\n\r\n", "dot segment",
                 id="dotdot"),
    pytest.param(b"GET /svc/%2e%2e/other/echo/M HTTP/1.1\r\nHost: a\r\n\r\n", "dot segment",
                 id="pct-dotdot"),
    pytest.param(b"GET /svc/.%2E/other/echo/M HTTP/1.1\r\nHost: a\r\n\r\n", "dot segment",
                 id="mixed-dotdot"),
    pytest.param(b"GET /svc/./echo/M HTTP/1.1\r\nHost: a\r\n\r\n", "dot segment", id="dot"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", "control",
                 id="nul-in-value"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", "header name",
                 id="space-before-colon"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"f" * 16 + b"\r\nhello\r\n0\r\n\r\n", "chunk size", id="chunk-16-f"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"8000000000000000\r\nhello\r\n0\r\n\r\n", "chunk size", id="chunk-2-63"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808"
                 b"\r\n\r\nhello", "Content-Length", id="content-length-2-63"),
] + [
    pytest.param(b"GET /svc/echo/a" + c + b"b HTTP/1.1\r\nHost: a\r\n\r\n", "percent-encoded",
                 id=f"unencoded-{name}")
    for c, name in [(b"|", "pipe"), (b"\\", "backslash"), (b"{", "brace"), (b"^", "caret"),
                    (b"`", "backtick"), (b'"', "quote"), (b"<", "less-than")]
]


@pytest.mark.parametrize(("request_bytes", "reason"), SHAPES)
def test_shape_is_400_logged_and_reaches_no_connector(router, target, svc, other, caplog,
                                                      request_bytes, reason):
    caplog.set_level(logging.INFO, logger="crank_sync")
    counted = bad_requests_counted(router)
    raw, closed = exchange_until_closed(router.http_port, request_bytes)
    assert raw, "no response at all"
    status, headers, body = head_of(raw)
    assert status == 400, raw[:300]
    assert headers.get("connection") == "close"
    assert headers.get("content-type", "").startswith("text/plain")
    assert body.startswith(b"400 Bad Request: ")
    assert closed, "the router kept the connection open after refusing the request"
    assert len(body) == int(headers["content-length"]), "more than one response"
    assert any(r.levelno >= logging.INFO and "400 for" in r.getMessage()
               and reason in r.getMessage() and "127.0.0.1" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert bad_requests_counted(router) == counted + 1
    # a good request on a fresh connection is served; it is the only one the target saw
    status, _, _ = raw_exchange(router.http_port, b"GET /svc/bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 200
    wait_for(lambda: target.received, what="the good request at the target")
    assert [r.path for r in target.received] == ["/svc/bytes/1"]


def test_chunk_size_too_large_mid_body_gets_400_promptly(router, target, svc):
    """A later chunk's size is found while the body streams to the connector: the client
    still gets its 400 (no response had started) and the connection is closed, and the
    target never gets a whole body."""
    request = (b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n" + b"f" * 16 + b"\r\nworld\r\n0\r\n\r\n")
    raw, closed = exchange_until_closed(router.http_port, request)
    status, headers, body = head_of(raw)
    assert status == 400, raw[:300]
    assert headers.get("connection") == "close"
    assert b"chunk size" in body
    assert closed
    status, _, _ = raw_exchange(router.http_port, b"GET /svc/bytes/1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 200
    wait_for(lambda: any(r.path == "/svc/bytes/1" for r in target.received),
             what="the good request at the target")
    assert not [r for r in target.received if r.path == "/svc/echo/M" and r.body_len is not None]
