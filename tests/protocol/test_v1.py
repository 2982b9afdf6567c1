"""Cranker v1.0 codec: request text (router -> connector) and response head (connector -> router).

Pure tables of ``(input, expected)`` rows; see PROTOCOL.md, "v1.0: one request per socket".
"""
from __future__ import annotations

import pytest

from crank_sync.errors import LocalProtocolError, RemoteProtocolError
from crank_sync.protocol.v1 import (
    MARKER_BODY_ENDED,
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    ResponseHead,
    encode_request,
    encode_response_head,
    parse_request,
    parse_response_head,
)

# --------------------------------------------------------------------------- encode_request

ENCODE_REQUEST_ROWS = [
    pytest.param(
        RequestHead(method="GET", target="/svc/a", headers=(("Host", "example.com"),)),
        "GET /svc/a HTTP/1.1\nHost:example.com\n\n_2",
        id="get-no-body",
    ),
    pytest.param(
        RequestHead(
            method="POST",
            target="/svc/upload",
            headers=(("Host", "h"), ("Content-Length", "5")),
            marker=MARKER_BODY_FOLLOWS,
        ),
        "POST /svc/upload HTTP/1.1\nHost:h\nContent-Length:5\n\n_1",
        id="post-body-follows",
    ),
    pytest.param(
        RequestHead(method="GET", target="/svc/a%20b%2Fc;jsessionid=1?q=%20x&y=a/b", headers=()),
        "GET /svc/a%20b%2Fc;jsessionid=1?q=%20x&y=a/b HTTP/1.1\n\n_2",
        id="raw-target-untouched",
    ),
    pytest.param(
        RequestHead(
            method="GET",
            target="/",
            headers=(("Cookie", "a=1"), ("X-A", "1"), ("cookie", "b=2"), ("Cookie", "c=3")),
        ),
        "GET / HTTP/1.1\nCookie:a=1; b=2; c=3\nX-A:1\n\n_2",
        id="cookies-joined-at-first-position",
    ),
    pytest.param(
        RequestHead(method="GET", target="/", headers=(("Cookie", "a=1; b=2"),)),
        "GET / HTTP/1.1\nCookie:a=1; b=2\n\n_2",
        id="single-cookie-unchanged",
    ),
    pytest.param(
        RequestHead(method="GET", target="/", headers=(("Accept", "a"), ("Accept", "b"))),
        "GET / HTTP/1.1\nAccept:a\nAccept:b\n\n_2",
        id="duplicate-headers-one-line-each",
    ),
    pytest.param(
        RequestHead(method="OPTIONS", target="*", headers=()),
        "OPTIONS * HTTP/1.1\n\n_2",
        id="options-asterisk",
    ),
]


@pytest.mark.parametrize(("head", "expected"), ENCODE_REQUEST_ROWS)
def test_encode_request(head: RequestHead, expected: str) -> None:
    assert encode_request(head) == expected


# --------------------------------------------------------------------------- round trips

ROUND_TRIP_ROWS = [
    pytest.param(method, target, headers, marker, id=f"{method}-{i}")
    for i, (method, target, headers, marker) in enumerate(
        [
            ("GET", "/svc", (("Host", "h"),), MARKER_NO_BODY),
            ("HEAD", "/svc/x", (), MARKER_NO_BODY),
            ("POST", "/svc/x", (("Content-Length", "3"),), MARKER_BODY_FOLLOWS),
            ("PUT", "/svc/x", (("Transfer-Encoding", "chunked"),), MARKER_BODY_FOLLOWS),
            ("PATCH", "/svc/x", (), MARKER_BODY_FOLLOWS),
            ("DELETE", "/svc/x", (), MARKER_NO_BODY),
            ("OPTIONS", "/svc/x", (), MARKER_NO_BODY),
            ("PROPFIND", "/dav/", (("Depth", "1"),), MARKER_NO_BODY),
            ("GET", "/svc/a%20b", (), MARKER_NO_BODY),
            ("GET", "/svc/a%2Fb/c", (), MARKER_NO_BODY),
            ("GET", "/svc/a;p=1;q=2/b;x", (), MARKER_NO_BODY),
            ("GET", "/svc?a=1&a=2&b=%2F%20+&c", (), MARKER_NO_BODY),
            ("GET", "/svc/%E2%82%AC?x=%25", (), MARKER_NO_BODY),
            ("GET", "/svc/path:with:colons?t=12:00", (), MARKER_NO_BODY),
            ("GET", "/", (("X-Dup", "1"), ("X-Dup", "2"), ("x-dup", "3")), MARKER_NO_BODY),
            ("GET", "/", (("X-Empty", ""),), MARKER_NO_BODY),
            ("GET", "/", (("X-Colon", "a:b:c"), ("Date", "Tue, 01 Jan 2030 00:00:00 GMT")), MARKER_NO_BODY),
            ("GET", "/", (("X-Utf8", "caf\u00e9"),), MARKER_NO_BODY),
        ]
    )
]


@pytest.mark.parametrize(("method", "target", "headers", "marker"), ROUND_TRIP_ROWS)
def test_request_round_trip(method: str, target: str, headers: tuple, marker: str) -> None:
    head = RequestHead(method=method, target=target, headers=headers, marker=marker)
    assert parse_request(encode_request(head)) == head


COOKIE_ROUND_TRIP_ROWS = [
    pytest.param(
        (("Cookie", "a=1"), ("Cookie", "b=2")),
        (("Cookie", "a=1; b=2"),),
        id="two",
    ),
    pytest.param(
        (("Host", "h"), ("Cookie", "a=1"), ("Accept", "*/*"), ("COOKIE", "b=2"), ("Cookie", "c=3")),
        (("Host", "h"), ("Cookie", "a=1; b=2; c=3"), ("Accept", "*/*")),
        id="three-mixed-case-interleaved",
    ),
]


@pytest.mark.parametrize(("headers", "expected"), COOKIE_ROUND_TRIP_ROWS)
def test_several_cookie_headers_arrive_as_one(headers: tuple, expected: tuple) -> None:
    head = RequestHead(method="GET", target="/", headers=headers)
    assert parse_request(encode_request(head)).headers == expected


# --------------------------------------------------------------------------- parse_request

PARSE_REQUEST_ROWS = [
    pytest.param(
        "GET /a HTTP/1.1\nHost:h\n\n_2",
        RequestHead(method="GET", target="/a", headers=(("Host", "h"),)),
        id="plain",
    ),
    pytest.param(
        "POST /a HTTP/1.1\nContent-Length:1\n\n_1",
        RequestHead(
            method="POST", target="/a", headers=(("Content-Length", "1"),), marker=MARKER_BODY_FOLLOWS
        ),
        id="body-follows",
    ),
    pytest.param(
        "GET /a HTTP/1.1\r\nHost: h\r\n\r\n_2",
        RequestHead(method="GET", target="/a", headers=(("Host", "h"),)),
        id="crlf-and-space-after-colon",
    ),
    pytest.param(
        "GET /a HTTP/1.1\nHost:h\n\n_3",
        RequestHead(method="GET", target="/a", headers=(("Host", "h"),)),
        id="marker-3-means-no-more-body",
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_REQUEST_ROWS)
def test_parse_request(text: str, expected: RequestHead) -> None:
    assert parse_request(text) == expected


@pytest.mark.parametrize(
    ("marker", "has_body"),
    [(MARKER_BODY_FOLLOWS, True), (MARKER_NO_BODY, False), (MARKER_BODY_ENDED, False)],
)
def test_parse_request_marker(marker: str, has_body: bool) -> None:
    assert parse_request(f"GET / HTTP/1.1\n\n{marker}").has_body is has_body


PARSE_REQUEST_REJECTIONS = [
    pytest.param("GET / HTTP/1.1\nHost:h\n\n", id="no-marker"),
    pytest.param("GET / HTTP/1.1\nHost:h\n", id="no-marker-no-blank"),
    pytest.param("GET / HTTP/1.1\nHost:h\n\n_4", id="unknown-marker"),
    pytest.param("GET / HTTP/1.1", id="request-line-only"),
    pytest.param("", id="empty"),
    pytest.param("GET /\n\n_2", id="no-version"),
    pytest.param("GET / FTP/1.1\n\n_2", id="not-http"),
    pytest.param("GET /a b HTTP/1.1\n\n_2", id="space-in-target"),
    pytest.param("GET  / HTTP/1.1\n\n_2", id="double-space"),
    pytest.param("G(T / HTTP/1.1\n\n_2", id="bad-method"),
    pytest.param("GET / HTTP/1.1\nBad Name:x\n\n_2", id="space-in-header-name"),
    pytest.param("GET / HTTP/1.1\nX-A:a\x00b\n\n_2", id="nul-in-value"),
]


@pytest.mark.parametrize("text", PARSE_REQUEST_REJECTIONS)
def test_parse_request_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_request(text)


# --------------------------------------------------------------------------- parse_response_head

PARSE_RESPONSE_ROWS = [
    pytest.param(
        "HTTP/1.1 200 OK\nContent-Type:text/plain\nContent-Length:2\n",
        ResponseHead(
            status=200, reason="OK", headers=(("Content-Type", "text/plain"), ("Content-Length", "2"))
        ),
        id="canonical",
    ),
    pytest.param(
        "HTTP/1.1 200 OK\r\nContent-Type:text/plain\r\n\r\n",
        ResponseHead(status=200, reason="OK", headers=(("Content-Type", "text/plain"),)),
        id="crlf-line-ends",
    ),
    pytest.param(
        "HTTP/1.1 200 OK\nContent-Type: text/plain\nX-B:  b\n",
        ResponseHead(status=200, reason="OK", headers=(("Content-Type", "text/plain"), ("X-B", "b"))),
        id="space-after-colon",
    ),
    pytest.param(
        "HTTP/1.1 404 Not Found\n",
        ResponseHead(status=404, reason="Not Found"),
        id="reason-several-words",
    ),
    pytest.param(
        "HTTP/1.1 201 Created\n",
        ResponseHead(status=201, reason="Created"),
        id="reason-one-word",
    ),
    pytest.param(
        "HTTP/1.1 200 TODO\nX-A:1\n",
        ResponseHead(status=200, reason="TODO", headers=(("X-A", "1"),)),
        id="reason-todo",
    ),
    pytest.param(
        "HTTP/1.1 204\nX-A:1\n",
        ResponseHead(status=204, reason="", headers=(("X-A", "1"),)),
        id="reason-missing",
    ),
    pytest.param(
        "HTTP/1.1 204 \r\n",
        ResponseHead(status=204, reason=""),
        id="reason-missing-trailing-space-crlf",
    ),
    pytest.param(
        "HTTP/1.1 200 OK\nGET /path\nContent-Length:0\n",
        ResponseHead(status=200, reason="OK", headers=(("Content-Length", "0"),)),
        id="crank4py-method-path-line-ignored",
    ),
    pytest.param(
        "HTTP/1.1 200 OK\r\nPOST /svc/a%20b?x=1\r\nX-A: 1\r\n",
        ResponseHead(status=200, reason="OK", headers=(("X-A", "1"),)),
        id="crank4py-line-crlf-ignored",
    ),
    pytest.param(
        "HTTP/1.1 200 OK\nSet-Cookie:a=1; Path=/\nX-A:1\nSet-Cookie:b=2\nset-cookie:c=3\n",
        ResponseHead(
            status=200,
            reason="OK",
            headers=(
                ("Set-Cookie", "a=1; Path=/"),
                ("X-A", "1"),
                ("Set-Cookie", "b=2"),
                ("set-cookie", "c=3"),
            ),
        ),
        id="set-cookie-duplicates-in-order",
    ),
    pytest.param(
        "HTTP/1.1 302 Found\nLocation:http://h:8080/a?b=c:d\n",
        ResponseHead(status=302, reason="Found", headers=(("Location", "http://h:8080/a?b=c:d"),)),
        id="colons-in-value",
    ),
    pytest.param(
        "HTTP/1.1 200 OK\nX-Empty:\n",
        ResponseHead(status=200, reason="OK", headers=(("X-Empty", ""),)),
        id="empty-value",
    ),
    pytest.param(
        "HTTP/1.0 500 Internal Server Error",
        ResponseHead(status=500, reason="Internal Server Error"),
        id="http-1.0-no-trailing-newline",
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_RESPONSE_ROWS)
def test_parse_response_head(text: str, expected: ResponseHead) -> None:
    assert parse_response_head(text) == expected


PARSE_RESPONSE_REJECTIONS = [
    pytest.param("", id="empty"),
    pytest.param("200 OK\n", id="no-version"),
    pytest.param("HTTP/1.1 OK\n", id="no-status"),
    pytest.param("HTTP/1.1 20 OK\n", id="two-digit-status"),
    pytest.param("HTTP/1.1 2000 OK\n", id="four-digit-status"),
    pytest.param("HTTP/1.1 abc OK\n", id="non-numeric-status"),
    pytest.param("HTTP/1.1 099 Weird\n", id="status-below-100"),
    pytest.param("HTTX/1.1 200 OK\n", id="bad-protocol"),
    pytest.param("Content-Type:text/plain\nHTTP/1.1 200 OK\n", id="header-before-status"),
    pytest.param("HTTP/1.1 200 OK\nBad Name:x\n", id="space-in-header-name"),
    pytest.param("HTTP/1.1 200 OK\n:x\n", id="empty-header-name"),
    pytest.param("HTTP/1.1 200 OK\nX-A(b):x\n", id="separator-in-header-name"),
    pytest.param("HTTP/1.1 200 OK\nX-A:a\x00b\n", id="nul-in-value"),
    pytest.param("HTTP/1.1 200 O\x00K\n", id="nul-in-reason"),
]


@pytest.mark.parametrize("text", PARSE_RESPONSE_REJECTIONS)
def test_parse_response_head_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_response_head(text)


# --------------------------------------------------------------------------- encode_response_head

ENCODE_RESPONSE_ROWS = [
    pytest.param(
        ResponseHead(status=200, reason="OK", headers=(("Content-Length", "2"),)),
        "HTTP/1.1 200 OK\nContent-Length:2\n",
        id="canonical",
    ),
    pytest.param(
        ResponseHead(status=404, reason="Not Found"),
        "HTTP/1.1 404 Not Found\n",
        id="no-headers",
    ),
    pytest.param(
        ResponseHead(status=200, reason="OK", headers=(("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))),
        "HTTP/1.1 200 OK\nSet-Cookie:a=1\nSet-Cookie:b=2\n",
        id="duplicates-one-line-each",
    ),
]


@pytest.mark.parametrize(("head", "expected"), ENCODE_RESPONSE_ROWS)
def test_encode_response_head(head: ResponseHead, expected: str) -> None:
    assert encode_response_head(head) == expected


RESPONSE_ROUND_TRIP_ROWS = [
    pytest.param(ResponseHead(status=200, reason="OK"), id="ok"),
    pytest.param(ResponseHead(status=599, reason="Custom Reason Here"), id="custom"),
    pytest.param(
        ResponseHead(
            status=200,
            reason="OK",
            headers=(("Set-Cookie", "a=1; Path=/"), ("Content-Encoding", "gzip"), ("Set-Cookie", "b=2")),
        ),
        id="set-cookies",
    ),
]


@pytest.mark.parametrize("head", RESPONSE_ROUND_TRIP_ROWS)
def test_response_head_round_trip(head: ResponseHead) -> None:
    assert parse_response_head(encode_response_head(head)) == head


def test_encode_response_head_without_reason_still_has_a_parseable_status_line() -> None:
    parsed = parse_response_head(encode_response_head(ResponseHead(status=204)))
    assert parsed.status == 204


# --------------------------------------------------------------------------- event validation

REQUEST_HEAD_INVALID = [
    pytest.param(dict(method="", target="/", headers=()), id="empty-method"),
    pytest.param(dict(method="GE T", target="/", headers=()), id="space-in-method"),
    pytest.param(dict(method="GET\r\n", target="/", headers=()), id="crlf-in-method"),
    pytest.param(dict(method="G/T", target="/", headers=()), id="slash-in-method"),
    pytest.param(dict(method="GET", target="", headers=()), id="empty-target"),
    pytest.param(dict(method="GET", target="/a b", headers=()), id="space-in-target"),
    pytest.param(dict(method="GET", target="/a\r\nX-Evil:1", headers=()), id="crlf-in-target"),
    pytest.param(dict(method="GET", target="/a\nb", headers=()), id="lf-in-target"),
    pytest.param(dict(method="GET", target="/a\x00", headers=()), id="nul-in-target"),
    pytest.param(dict(method="GET", target="/", headers=(("X-A", "a\r\nX-Evil: 1"),)), id="crlf-in-value"),
    pytest.param(dict(method="GET", target="/", headers=(("X-A", "a\nb"),)), id="lf-in-value"),
    pytest.param(dict(method="GET", target="/", headers=(("X-A", "a\rb"),)), id="cr-in-value"),
    pytest.param(dict(method="GET", target="/", headers=(("X-A", "a\x00b"),)), id="nul-in-value"),
    pytest.param(dict(method="GET", target="/", headers=(("X A", "v"),)), id="space-in-name"),
    pytest.param(dict(method="GET", target="/", headers=(("X-A:", "v"),)), id="colon-in-name"),
    pytest.param(dict(method="GET", target="/", headers=(("", "v"),)), id="empty-name"),
    pytest.param(dict(method="GET", target="/", headers=(("X\nA", "v"),)), id="lf-in-name"),
    pytest.param(dict(method="GET", target="/", headers=(), marker="_3"), id="marker-3"),
    pytest.param(dict(method="GET", target="/", headers=(), marker="_9"), id="marker-9"),
]


@pytest.mark.parametrize("kwargs", REQUEST_HEAD_INVALID)
def test_request_head_validates(kwargs: dict) -> None:
    with pytest.raises(LocalProtocolError):
        RequestHead(**kwargs)


RESPONSE_HEAD_INVALID = [
    pytest.param(dict(status=99), id="status-99"),
    pytest.param(dict(status=1000), id="status-1000"),
    pytest.param(dict(status=200, reason="OK\r\nX-Evil: 1"), id="crlf-in-reason"),
    pytest.param(dict(status=200, reason="OK\n"), id="lf-in-reason"),
    pytest.param(dict(status=200, headers=(("X-A", "a\r\nb"),)), id="crlf-in-value"),
    pytest.param(dict(status=200, headers=(("X-A", "a\rb"),)), id="cr-in-value"),
    pytest.param(dict(status=200, headers=(("X-A", "\x00"),)), id="nul-in-value"),
    pytest.param(dict(status=200, headers=(("Set Cookie", "a"),)), id="space-in-name"),
]


@pytest.mark.parametrize("kwargs", RESPONSE_HEAD_INVALID)
def test_response_head_validates(kwargs: dict) -> None:
    with pytest.raises(LocalProtocolError):
        ResponseHead(**kwargs)


def test_events_are_frozen() -> None:
    head = RequestHead(method="GET", target="/", headers=())
    with pytest.raises(AttributeError):
        head.method = "POST"  # type: ignore[misc]
