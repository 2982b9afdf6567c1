"""What reaches the target: exact paths, header limits, proxy headers, hop-by-hop removal."""

from __future__ import annotations

import http.client
import json

import pytest
from support import LOOPBACK, both_protocols, raw_exchange

pytestmark = both_protocols


def send_exact(router, method: str, path: str, headers: list[tuple[str, str]] = ()):
    """Send ``path`` exactly as given, with exactly these extra headers, via http.client."""
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=10)
    try:
        skip_host = any(name.lower() == "host" for name, _ in headers)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/svc/headers/a%20b",
        "/svc/headers/one%2Ftwo/three",
        "/svc/headers/file;jsessionid=abc;v=1",
        "/svc/headers/q?x=a%20b&y=%2F&z=1;2&empty=&plus=a+b",
        "/svc/headers/%7Euser/%25percent?%3D=%26",
    ],
)
def test_path_and_query_preserved_byte_for_byte(router, target, svc, path):
    status, _, body = send_exact(router, "GET", path)
    assert status == 200
    assert json.loads(body)["path"] == path
    assert [r.path for r in target.received] == [path]


def test_large_header_of_18000_chars_is_forwarded(router, target, svc):
    big = "v" * 18000
    status, _, _ = send_exact(router, "GET", "/svc/headers/big", [("X-Big", big)])
    assert status == 200
    rec = target.received_for("/svc/headers/big")[-1]
    assert rec.header_values("X-Big") == [big]


def test_oversized_single_header_gets_431(router, target, svc):
    request = (
        b"GET /svc/headers/huge HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: "
        + b"h" * 70000
        + b"\r\n\r\n"
    )
    status, _, _ = raw_exchange(router.http_port, request)
    assert status == 431
    assert target.received_for("/svc/headers/huge") == []


def test_total_header_size_over_limit_gets_431(router, target, svc):
    lines = b"".join(b"X-Part-%d: %s\r\n" % (i, b"p" * 14000) for i in range(5))
    request = b"GET /svc/headers/many HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n"
    status, _, _ = raw_exchange(router.http_port, request)
    assert status == 431
    assert target.received_for("/svc/headers/many") == []


def _split_list(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def test_forwarded_header_added(router, target, svc):
    host = f"127.0.0.1:{router.http_port}"
    status, _, _ = send_exact(router, "GET", "/svc/headers/fwd", [("Host", host)])
    assert status == 200
    rec = target.received_for("/svc/headers/fwd")[-1]
    forwarded = _split_list(rec.header_values("Forwarded"))
    assert forwarded, f"no Forwarded header at the target: {rec.headers}"
    params = {}
    for pair in forwarded[-1].split(";"):
        name, _, value = pair.strip().partition("=")
        params[name.lower()] = value.strip('"')
    assert params.get("for") == "127.0.0.1", forwarded
    assert params.get("proto") == "http", forwarded
    assert params.get("host") == host, forwarded
    # Host itself is kept by default
    assert rec.header_values("Host") == [host]


def test_via_appended_after_existing_via(router, target, svc):
    status, _, _ = send_exact(
        router, "GET", "/svc/headers/via", [("Host", "x"), ("Via", "1.0 fred, 1.1 p.example")]
    )
    assert status == 200
    rec = target.received_for("/svc/headers/via")[-1]
    assert _split_list(rec.header_values("Via")) == ["1.0 fred", "1.1 p.example", "1.1 crank_sync"]


def test_via_added_when_client_sent_none(router, target, svc):
    status, _, _ = send_exact(router, "GET", "/svc/headers/via", [("Host", "x")])
    assert status == 200
    rec = target.received_for("/svc/headers/via")[-1]
    assert _split_list(rec.header_values("Via")) == ["1.1 crank_sync"]


def test_hop_by_hop_headers_not_forwarded(router, target, svc):
    status, _, _ = send_exact(
        router,
        "GET",
        "/svc/headers/hop",
        [
            ("Host", "x"),
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "example/1"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Hop-Custom", "should vanish"),
            ("X-End-To-End", "should arrive"),
        ],
    )
    assert status == 200
    rec = target.received_for("/svc/headers/hop")[-1]
    names = {n.lower() for (n, _) in rec.headers}
    for hop in ("keep-alive", "te", "upgrade", "proxy-authorization", "x-hop-custom"):
        assert hop not in names, f"{hop} reached the target: {rec.headers}"
    # the target may see its own Connection header from the connector, never the client's
    assert "X-Hop-Custom" not in " ".join(rec.header_values("Connection"))
    assert rec.header_values("X-End-To-End") == ["should arrive"]


def test_several_cookie_headers_arrive_joined(router, target, svc):
    status, _, _ = send_exact(
        router, "GET", "/svc/headers/cookie", [("Host", "x"), ("Cookie", "a=1"), ("Cookie", "b=2")]
    )
    assert status == 200
    rec = target.received_for("/svc/headers/cookie")[-1]
    assert rec.header_values("Cookie") == ["a=1; b=2"]


def test_repeated_ordinary_headers_keep_all_values(router, target, svc):
    status, _, _ = send_exact(
        router,
        "GET",
        "/svc/headers/rep",
        [("Host", "x"), ("X-Multi", "one"), ("X-Multi", "two")],
    )
    assert status == 200
    rec = target.received_for("/svc/headers/rep")[-1]
    assert _split_list(rec.header_values("X-Multi")) == ["one", "two"]
