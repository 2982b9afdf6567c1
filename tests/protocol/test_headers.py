"""Proxy header rules (PROTOCOL.md, "Router behaviour around the protocol"), and route rules."""
from __future__ import annotations

import pytest

from crank_sync.config import validate_route
from crank_sync.protocol.headers import (
    filter_request_headers,
    filter_response_headers,
    forwarded_element,
    route_of,
)

FWD = "for=10.0.0.7;host=example.com;proto=https;by=router1"
VIA = ("Via", "1.1 crank")


def request_headers(headers: list[tuple[str, str]], **options: object) -> list[tuple[str, str]]:
    kwargs: dict = dict(client_ip="10.0.0.7", proto="https", by="router1", via_name="crank")
    kwargs.update(options)
    return filter_request_headers(headers, **kwargs)


# --------------------------------------------------------------------------- request headers

REQUEST_ROWS = [
    pytest.param(
        [("Host", "example.com"), ("Accept", "*/*")],
        {},
        [("Host", "example.com"), ("Accept", "*/*"), ("Forwarded", FWD), VIA],
        id="host-kept-forwarded-and-via-appended",
    ),
    pytest.param(
        [
            ("Host", "example.com"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Authorization", "Bearer t"),
        ],
        {},
        [("Host", "example.com"), ("Authorization", "Bearer t"), ("Forwarded", FWD), VIA],
        id="hop-by-hop-removed",
    ),
    pytest.param(
        [
            ("Host", "example.com"),
            ("CONNECTION", "Keep-Alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
        ],
        {},
        [("Host", "example.com"), ("Forwarded", FWD), VIA],
        id="hop-by-hop-case-insensitive",
    ),
    pytest.param(
        [
            ("Host", "example.com"),
            ("Connection", "close, X-Secret ,x-other"),
            ("X-Secret", "s"),
            ("X-Other", "o"),
            ("X-Kept", "k"),
        ],
        {},
        [("Host", "example.com"), ("X-Kept", "k"), ("Forwarded", FWD), VIA],
        id="headers-named-in-connection-removed",
    ),
    pytest.param(
        [("Host", "example.com"), ("Connection", "X-A"), ("Connection", "X-B"), ("X-A", "1"), ("X-B", "2")],
        {},
        [("Host", "example.com"), ("Forwarded", FWD), VIA],
        id="several-connection-headers",
    ),
    pytest.param(
        [("Host", "example.com"), ("Expect", "100-continue"), ("Content-Length", "9")],
        {},
        [("Host", "example.com"), ("Content-Length", "9"), ("Forwarded", FWD), VIA],
        id="expect-removed",
    ),
    pytest.param(
        [("Host", "example.com"), ("Accept", "a"), ("X-Dup", "1"), ("Accept", "b"), ("X-Dup", "2")],
        {},
        [
            ("Host", "example.com"),
            ("Accept", "a"),
            ("X-Dup", "1"),
            ("Accept", "b"),
            ("X-Dup", "2"),
            ("Forwarded", FWD),
            VIA,
        ],
        id="duplicates-kept-in-order",
    ),
    pytest.param(
        [("Forwarded", "for=192.0.2.1;proto=http"), ("Host", "example.com")],
        {},
        [("Forwarded", "for=192.0.2.1;proto=http"), ("Host", "example.com"), ("Forwarded", FWD), VIA],
        id="forwarded-appended-after-clients",
    ),
    pytest.param(
        [("Forwarded", "for=192.0.2.1"), ("Host", "example.com"), ("forwarded", "for=192.0.2.2")],
        {"discard_client_forwarded": True},
        [("Host", "example.com"), ("Forwarded", FWD), VIA],
        id="discard-client-forwarded",
    ),
    pytest.param(
        [("Host", "example.com"), ("Via", "1.0 fred, 1.1 p.example.net")],
        {},
        [("Host", "example.com"), ("Via", "1.0 fred, 1.1 p.example.net"), ("Forwarded", FWD), VIA],
        id="via-appended-after-existing",
    ),
    pytest.param(
        [("Accept", "*/*")],
        {"proto": "http"},
        [("Accept", "*/*"), ("Forwarded", "for=10.0.0.7;proto=http;by=router1"), VIA],
        id="no-host-no-host-param",
    ),
    pytest.param(
        [("Host", "example.com:8080")],
        {"client_ip": "2001:db8::1"},
        [
            ("Host", "example.com:8080"),
            ("Forwarded", 'for="[2001:db8::1]";host="example.com:8080";proto=https;by=router1'),
            VIA,
        ],
        id="ipv6-client-quoted-and-host-with-port-quoted",
    ),
    pytest.param(
        [("Host", "[::1]:9000")],
        {"client_ip": "::1", "proto": "http"},
        [("Host", "[::1]:9000"), ("Forwarded", 'for="[::1]";host="[::1]:9000";proto=http;by=router1'), VIA],
        id="ipv6-loopback-and-ipv6-host",
    ),
    pytest.param(
        [("Host", "example.com")],
        {"x_forwarded": True},
        [
            ("Host", "example.com"),
            ("Forwarded", FWD),
            VIA,
            ("X-Forwarded-For", "10.0.0.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "example.com"),
        ],
        id="x-forwarded-added",
    ),
    pytest.param(
        [
            ("Host", "example.com"),
            ("X-Forwarded-For", "192.0.2.1"),
            ("X-Forwarded-For", "192.0.2.2, 192.0.2.3"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil"),
        ],
        {"x_forwarded": True},
        [
            ("Host", "example.com"),
            ("Forwarded", "for=192.0.2.1;host=evil;proto=http"),
            ("Forwarded", "for=192.0.2.2"),
            ("Forwarded", "for=192.0.2.3"),
            ("Forwarded", FWD),
            VIA,
            ("X-Forwarded-For", "192.0.2.1, 192.0.2.2, 192.0.2.3, 10.0.0.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "example.com"),
        ],
        id="x-forwarded-for-extended",
    ),
    pytest.param(
        [("Host", "example.com"), ("X-Forwarded-For", "192.0.2.1")],
        {},
        [("Host", "example.com"), ("X-Forwarded-For", "192.0.2.1"),
         ("Forwarded", "for=192.0.2.1"), ("Forwarded", FWD), VIA],
        id="x-forwarded-off-leaves-client-values-and-becomes-forwarded",
    ),
    pytest.param(
        [("Host", "example.com"), ("X-Forwarded-For", "2001:db8::9, unknown, _hidden, a b"),
         ("X-Forwarded-Proto", "HTTPS"), ("X-Forwarded-Host", "shop.example:8443")],
        {},
        [("Host", "example.com"), ("X-Forwarded-For", "2001:db8::9, unknown, _hidden, a b"),
         ("X-Forwarded-Proto", "HTTPS"), ("X-Forwarded-Host", "shop.example:8443"),
         ("Forwarded", 'for="[2001:db8::9]";host="shop.example:8443";proto=https'),
         ("Forwarded", "for=unknown"), ("Forwarded", "for=_hidden"), ("Forwarded", 'for="a b"'),
         ("Forwarded", FWD), VIA],
        id="x-forwarded-for-from-a-load-balancer-becomes-forwarded-elements",
    ),
    pytest.param(
        [("Host", "example.com"), ("Forwarded", "for=192.0.2.9"), ("X-Forwarded-For", "192.0.2.1")],
        {},
        [("Host", "example.com"), ("Forwarded", "for=192.0.2.9"), ("X-Forwarded-For", "192.0.2.1"),
         ("Forwarded", FWD), VIA],
        id="a-forwarded-chain-wins-over-x-forwarded-for",
    ),
    pytest.param(
        [("Host", "example.com"), ("Forwarded", "for=192.0.2.9"), ("X-Forwarded-For", "192.0.2.1"),
         ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "evil"), ("X-Forwarded-Port", "1"),
         ("X-Real-IP", "192.0.2.1")],
        {"discard_client_forwarded": True},
        [("Host", "example.com"), ("X-Real-IP", "192.0.2.1"), ("Forwarded", FWD), VIA],
        id="discard-client-forwarded-drops-every-forwarding-header",
    ),
    pytest.param(
        [("Host", "example.com"), ("Accept", "*/*")],
        {"proxy_host": False},
        [("Accept", "*/*"), ("Forwarded", FWD), VIA],
        id="proxy-host-off-drops-host-but-forwarded-keeps-it",
    ),
]


@pytest.mark.parametrize(("headers", "options", "expected"), REQUEST_ROWS)
def test_filter_request_headers(headers: list, options: dict, expected: list) -> None:
    assert request_headers(headers, **options) == expected


def test_filter_request_headers_does_not_mutate_input() -> None:
    headers = [("Host", "h"), ("Connection", "close")]
    request_headers(headers)
    assert headers == [("Host", "h"), ("Connection", "close")]


FORWARDED_ROWS = [
    pytest.param(("10.0.0.1", "h", "http", "r"), "for=10.0.0.1;host=h;proto=http;by=r", id="v4"),
    pytest.param(("fe80::1", None, "https", "r"), 'for="[fe80::1]";proto=https;by=r', id="v6-no-host"),
    pytest.param(("10.0.0.1", "h", "http", "my router"), 'for=10.0.0.1;host=h;proto=http;by="my router"', id="by-quoted"),
    pytest.param(("10.0.0.1", 'a"b', "http", "r"), 'for=10.0.0.1;host="a\\"b";proto=http;by=r', id="quote-escaped"),
]


@pytest.mark.parametrize(("args", "expected"), FORWARDED_ROWS)
def test_forwarded_element(args: tuple, expected: str) -> None:
    assert forwarded_element(*args) == expected


# --------------------------------------------------------------------------- response headers

RESPONSE_ROWS = [
    pytest.param(
        [("Content-Type", "text/plain"), ("Content-Length", "5")],
        [("Content-Type", "text/plain"), ("Content-Length", "5")],
        id="plain-kept",
    ),
    pytest.param(
        [
            ("Connection", "keep-alive, X-Internal"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "X-Sum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authenticate", "Basic"),
            ("X-Internal", "1"),
            ("Content-Type", "text/plain"),
        ],
        [("Content-Type", "text/plain")],
        id="hop-by-hop-and-connection-named-removed",
    ),
    pytest.param(
        [("Set-Cookie", "a=1; Path=/"), ("X-A", "1"), ("Set-Cookie", "b=2"), ("set-cookie", "c=3")],
        [("Set-Cookie", "a=1; Path=/"), ("X-A", "1"), ("Set-Cookie", "b=2"), ("set-cookie", "c=3")],
        id="set-cookie-duplicates-kept",
    ),
    pytest.param(
        [("Content-Encoding", "gzip"), ("Content-Length", "20"), ("Vary", "Accept-Encoding")],
        [("Content-Encoding", "gzip"), ("Content-Length", "20"), ("Vary", "Accept-Encoding")],
        id="content-encoding-kept",
    ),
    pytest.param([], [], id="empty"),
]


@pytest.mark.parametrize(("headers", "expected"), RESPONSE_ROWS)
def test_filter_response_headers(headers: list, expected: list) -> None:
    assert filter_response_headers(headers) == expected


# --------------------------------------------------------------------------- routes

ROUTE_OF_ROWS = [
    ("/my-service/x", "my-service"),
    ("/my-service", "my-service"),
    ("/my-service/", "my-service"),
    ("/my-service?x=/a/b", "my-service"),
    ("/my-service/a/b?c", "my-service"),
    ("/", ""),
    ("/?q=1", ""),
    ("/a%20b/c", "a%20b"),
]


@pytest.mark.parametrize(("target", "expected"), ROUTE_OF_ROWS)
def test_route_of(target: str, expected: str) -> None:
    assert route_of(target) == expected


VALID_ROUTES = [
    ("my-service", "my-service"),
    ("a_b.c-d", "a_b.c-d"),
    ("A9", "A9"),
    ("api/v1", "api/v1"),
    ("*", "*"),
    (" svc ", "svc"),
]


@pytest.mark.parametrize(("route", "expected"), VALID_ROUTES)
def test_validate_route(route: str, expected: str) -> None:
    assert validate_route(route) == expected


INVALID_ROUTES = [
    "",  # the catch-all is asked for as "*"
    "  ",
    "..",
    "a/../b",
    "../etc",
    "a..b",
    "my service",
    "a:b",
    "a?b",
    "a%20b",
    "caf\u00e9",
    "**",
    "a*",
    "a\nb",
    "a;b",
]


@pytest.mark.parametrize("route", INVALID_ROUTES)
def test_validate_route_rejects(route: str) -> None:
    with pytest.raises(ValueError):
        validate_route(route)
