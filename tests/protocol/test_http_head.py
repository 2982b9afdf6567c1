"""The strict client request-head parser: tables of raw heads, fed as bytes.

Every head the rest of the suite sends through the router is in GOOD; every shape two HTTP
parsers could read differently (RFC 9112, and the smuggling set-ups behind a front proxy) is in
BAD.
"""
from __future__ import annotations

import http.client
import io
import random

import pytest

from crank_sync.errors import BadRequest, HttpVersionNotSupported
from crank_sync.protocol.http_head import ClientHead, _fields, _fields_fast, parse_client_head

H = b"Host: a\r\n"

# --------------------------------------------------------------------------- accepted heads

GOOD = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                 ("GET", "/", "HTTP/1.1", [("Host", "a")]), id="minimal"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: python-requests/2"
                 b"\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive"
                 b"\r\n\r\n",
                 ("GET", "/svc/x", "HTTP/1.1",
                  [("Host", "127.0.0.1:8080"), ("User-Agent", "python-requests/2"),
                   ("Accept-Encoding", "gzip, deflate"), ("Accept", "*/*"),
                   ("Connection", "keep-alive")]), id="requests-style"),
    pytest.param(b"GET /x HTTP/1.1\nHost: a\n\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "a")]), id="bare-lf-line-ends"),
    pytest.param(b"GET /svc/chunked HTTP/1.0\r\n\r\n",
                 ("GET", "/svc/chunked", "HTTP/1.0", []), id="http10-without-host"),
    pytest.param(b"GET /svc/chunked HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                 ("GET", "/svc/chunked", "HTTP/1.0", [("Host", "127.0.0.1")]), id="http10-host"),
    pytest.param(b"POST /svc/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n",
                 ("POST", "/svc/echo", "HTTP/1.1", [("Host", "a"), ("Content-Length", "4")]),
                 id="post-content-length"),
    pytest.param(b"POST /svc/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                 ("POST", "/svc/echo", "HTTP/1.1",
                  [("Host", "a"), ("Transfer-Encoding", "chunked")]), id="post-chunked"),
    pytest.param(b"GET /x HTTP/1.1\r\nhOsT: a\r\nx-lower: 1\r\nX-UPPER: 2\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("hOsT", "a"), ("x-lower", "1"), ("X-UPPER", "2")]),
                 id="names-any-case"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Tab:\tone\ttwo\t\r\nX-Pad:   three  \r\n\r\n",
                 ("GET", "/x", "HTTP/1.1",
                  [("Host", "a"), ("X-Tab", "one\ttwo"), ("X-Pad", "three")]),
                 id="tabs-inside-ows-around"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Blank:   \r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "a"), ("X-Empty", ""), ("X-Blank", "")]),
                 id="empty-values"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Wide: " + b" " * 30000 + b"a" + b"\t" * 30000
                 + b"b  \r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "a"), ("X-Wide", "a" + "\t" * 30000 + "b")]),
                 id="long-whitespace-runs"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost:\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "")]), id="empty-host"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9 \x80\xff\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "a"), ("X-Latin", "caf\xe9 \x80\xff")]),
                 id="obs-text"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Multi: one\r\nCookie: a=1\r\nX-Multi: two"
                 b"\r\nCookie: b=2\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1",
                  [("Host", "a"), ("X-Multi", "one"), ("Cookie", "a=1"), ("X-Multi", "two"),
                   ("Cookie", "b=2")]), id="duplicates-kept-in-order"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: x\r\nVia: 1.0 fred, 1.1 p.example\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "x"), ("Via", "1.0 fred, 1.1 p.example")]),
                 id="via-list"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Colons: a:b::c\r\nX-Sym: \"q\" <t> {}\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1",
                  [("Host", "a"), ("X-Colons", "a:b::c"), ("X-Sym", '"q" <t> {}')]),
                 id="colons-and-symbols-in-values"),
    pytest.param(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 18000 + b"\r\n\r\n",
                 ("GET", "/x", "HTTP/1.1", [("Host", "a"), ("X-Big", "v" * 18000)]),
                 id="18000-char-value"),
    pytest.param(b"GET /svc/environ/a%20b%2Fc?q=%20&x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
                 ("GET", "/svc/environ/a%20b%2Fc?q=%20&x", "HTTP/1.1",
                  [("Host", "example.com:8080")]), id="escaped-path-and-query"),
    pytest.param(b"DELETE /svc/x HTTP/1.1\r\nHost: a\r\n\r\n",
                 ("DELETE", "/svc/x", "HTTP/1.1", [("Host", "a")]), id="delete"),
    pytest.param(b"M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n",
                 ("M-SEARCH", "/x", "HTTP/1.1", [("Host", "a")]), id="extension-method"),
    # the router refuses these targets itself, as it did before (not origin-form)
    pytest.param(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                 ("OPTIONS", "*", "HTTP/1.1", [("Host", "a")]), id="asterisk-form"),
    pytest.param(b"GET http://example.com/svc/../x HTTP/1.1\r\nHost: example.com\r\n\r\n",
                 ("GET", "http://example.com/svc/../x", "HTTP/1.1", [("Host", "example.com")]),
                 id="absolute-form"),
]

#: Paths that look like dot segments but are not: each is forwarded exactly as it came.
GOOD_PATHS = [
    "/svc/headers/a%20b",
    "/svc/headers/one%2Ftwo/three",
    "/svc/headers/file;jsessionid=abc;v=1",
    "/svc/headers/q?x=a%20b&y=%2F&z=1;2&empty=&plus=a+b",
    "/svc/headers/%7Euser/%25percent?%3D=%26",
    "/svc/.hidden/x",
    "/svc/.../x",
    "/svc/a..b/x",
    "/svc/x..",
    "/svc/%2e%2e%2e/x",
    "/svc/file.txt",
    "/svc/%2ex",
    "/svc//double",
    "/svc/x?path=../other&y=./z",
    "/svc/x?..",
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_good_heads_parse(raw: bytes, expected: tuple) -> None:
    method, target, version, headers = expected
    assert parse_client_head(raw) == ClientHead(method=method, target=target, version=version,
                                                headers=tuple(headers))


@pytest.mark.parametrize("path", GOOD_PATHS)
def test_paths_that_are_not_dot_segments_are_kept(path: str) -> None:
    head = parse_client_head(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert head.target == path


@pytest.mark.parametrize("raw", [p.values[0] for p in GOOD])
def test_good_heads_agree_with_the_standard_library(raw: bytes) -> None:
    """Where the strict parser accepts, it sees the same headers as a lenient one."""
    _, _, rest = raw.partition(b"\n")
    lenient = http.client.parse_headers(io.BytesIO(rest))
    assert list(parse_client_head(raw).headers) == [(n, v.strip(" \t"))
                                                    for n, v in lenient.items()]


# --------------------------------------------------------------------------- refused heads

BAD = [
    # the shapes
    pytest.param(b"POST /svc/x HTTP/1.1\r\nHost: a\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
                 "bare CR", id="bare-cr-in-value"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\nX-A: a\r\r\n\r\n", "bare CR",
                 id="cr-cr-lf"),
    pytest.param(b"GET /svc/x HTTP/1.1\rHost: a\r\n\r\n", "bare CR", id="bare-cr-request-line"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\n\r\r\n", "bare CR", id="bare-cr-blank-line"),
    pytest.param(b"POST /svc/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
                 "folding", id="obs-fold-transfer-encoding"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,\r\n\tX-Hop\r\n\r\n",
                 "folding", id="obs-fold-connection-tab"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
                 "folding", id="obs-fold-space"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n Host: a\r\n\r\n", "folding",
                 id="first-header-indented"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "2 Host", id="two-hosts"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "2 Host",
                 id="two-hosts-same-value"),
    pytest.param(b"GET /svc/x HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "2 Host",
                 id="two-hosts-http10"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n\r\n", "no Host", id="no-host-http11"),
    pytest.param(b"GET /svc/../other/x HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="dotdot"),
    pytest.param(b"GET /svc/./x HTTP/1.1\r\n" + H + b"\r\n", "dot segment", id="dot"),
    pytest.param(b"GET /svc/.. HTTP/1.1\r\n" + H + b"\r\n", "dot segment", id="dotdot-last"),
    pytest.param(b"GET /svc/..?q=1 HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="dotdot-before-query"),
    pytest.param(b"GET /../svc/x HTTP/1.1\r\n" + H + b"\r\n", "dot segment", id="dotdot-first"),
    pytest.param(b"GET /svc/%2e%2e/other HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="pct-dotdot-lower"),
    pytest.param(b"GET /svc/%2E%2E/other HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="pct-dotdot-upper"),
    pytest.param(b"GET /svc/.%2e/other HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="pct-dotdot-mixed"),
    pytest.param(b"GET /svc/%2E./other HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="pct-dotdot-mixed-other-way"),
    pytest.param(b"GET /svc/%2e/x HTTP/1.1\r\n" + H + b"\r\n", "dot segment", id="pct-dot"),
    pytest.param(b"GET /svc/..;x=1/other HTTP/1.1\r\n" + H + b"\r\n", "dot segment",
                 id="dotdot-with-params"),
    # request lines (the suite's shapes, and more)
    pytest.param(b"GET /svc/x HTTP/1.1 extra\r\n" + H + b"\r\n", "request line", id="four-words"),
    pytest.param(b"GET /svc/x HTTX/1.1\r\n" + H + b"\r\n", "version", id="bad-version"),
    pytest.param(b"GET /svc/x http/1.1\r\n" + H + b"\r\n", "version", id="lower-case-version"),
    pytest.param(b"GET /svc/x HTTP/1.10\r\n" + H + b"\r\n", "version", id="long-version"),
    pytest.param(b"GET\r\n" + H + b"\r\n", "request line", id="method-only"),
    pytest.param(b"GET /svc/x\r\n" + H + b"\r\n", "request line", id="http09-two-words"),
    pytest.param(b"GET /svc/x HTTP/0.9\r\n" + H + b"\r\n", "HTTP/0.9", id="http09-version"),
    pytest.param(b"GET  /svc/x HTTP/1.1\r\n" + H + b"\r\n", "request line", id="double-space"),
    pytest.param(b"GET\t/svc/x HTTP/1.1\r\n" + H + b"\r\n", "request line", id="tab-separator"),
    pytest.param(b"GET /svc/x HTTP/1.1 \r\n" + H + b"\r\n", "request line", id="trailing-space"),
    pytest.param(b"G@T /svc/x HTTP/1.1\r\n" + H + b"\r\n", "method", id="method-not-token"),
    pytest.param(b"GET /svc/\x00x HTTP/1.1\r\n" + H + b"\r\n", "printable", id="nul-in-target"),
    pytest.param(b"GET /svc/\xe9 HTTP/1.1\r\n" + H + b"\r\n", "printable", id="non-ascii-target"),
    pytest.param(b"GET /svc/x\x7f HTTP/1.1\r\n" + H + b"\r\n", "printable", id="del-in-target"),
] + [
    pytest.param(b"GET /svc/a" + c + b"b?q=1 HTTP/1.1\r\n" + H + b"\r\n", "percent-encoded",
                 id=f"unencoded-{c.decode()}-in-target")
    for c in [b"|", b"\\", b"{", b"}", b"^", b"`", b'"', b"<", b">"]
] + [
    pytest.param(b"GET /svc/a?q=" + c + b" HTTP/1.1\r\n" + H + b"\r\n", "percent-encoded",
                 id=f"unencoded-{c.decode()}-in-query")
    for c in [b"|", b"{", b"}"]
] + [
    # header lines
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"No colon here\r\n\r\n", "colon",
                 id="no-colon"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n", "header name",
                 id="space-before-colon"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n", "header name",
                 id="tab-before-colon"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n", "header name",
                 id="space-in-name"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b": 1\r\n\r\n", "header name",
                 id="empty-name"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-\xe9: 1\r\n\r\n", "header name",
                 id="non-ascii-name"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", "header name",
                 id="separator-in-name"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", "control",
                 id="nul-in-value"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: a\x1bb\r\n\r\n", "control",
                 id="escape-in-value"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", "control",
                 id="del-in-value"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: a\x0bb\r\n\r\n", "control",
                 id="vertical-tab-in-value"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\x00.example\r\n\r\n", "control",
                 id="nul-in-host"),
    # long runs of whitespace before a bad byte: refused in time linear in the line
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: " + b" " * 60000 + b"\x00\r\n\r\n",
                 "control", id="spaces-then-nul"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: " + b"a " * 30000 + b"\x01\r\n\r\n",
                 "control", id="words-then-control"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n" + H + b"X-A: " + b"a\t" * 30000 + b"\r\r\n\r\n",
                 "bare CR", id="words-then-bare-cr"),
    # not one whole head
    pytest.param(b"GET /svc/x HTTP/1.1\r\nHost: a\r\n", "empty line", id="no-blank-line"),
    pytest.param(b"GET /svc/x HTTP/1.1\r\n", "empty line", id="request-line-only"),
    pytest.param(b"", "empty line", id="nothing"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_bad_heads_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason) as info:
        parse_client_head(raw)
    assert info.value.status == 400


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0"])
def test_unsupported_version_is_505(version: bytes) -> None:
    with pytest.raises(HttpVersionNotSupported) as info:
        parse_client_head(b"GET /x " + version + b"\r\nHost: a\r\n\r\n")
    assert info.value.status == 505


@pytest.mark.parametrize("raw", [p.values[0] for p in GOOD])
def test_quick_and_line_by_line_readings_agree(raw: bytes) -> None:
    start = raw.index(b"\n") + 1
    assert _fields_fast(raw, start) == _fields(raw[start:])


@pytest.mark.parametrize("raw", [p.values[0] for p in BAD if b"\n" in p.values[0]])
def test_quick_reading_gives_up_on_every_bad_header_block(raw: bytes) -> None:
    """Every refusal is the line-by-line reading's, which names the reason."""
    start = raw.index(b"\n") + 1
    try:
        fields = _fields(raw[start:])
    except BadRequest:
        assert _fields_fast(raw, start) is None
    else:  # the request line or the Host count is what is wrong
        assert _fields_fast(raw, start) == fields


def test_every_bad_head_is_refused_whatever_the_line_ends() -> None:
    """The same shapes with bare-LF line ends are refused too (none rely on CRLF to fail)."""
    for param in BAD:
        raw, reason = param.values
        if b"\r" in raw.replace(b"\r\n", b""):
            continue  # the bare-CR rows: with LF ends they are still bare CRs, tested above
        with pytest.raises(BadRequest, match=reason):
            parse_client_head(raw.replace(b"\r\n", b"\n"))


def _random_block(rng: random.Random) -> bytes:
    """Header lines that are mostly well formed, with the odd bad byte or shape in them."""
    names = [b"X-A", b"host", b"a", b"X A", b"", b" X", b"\tX", b"X\x80"]
    values = [b"a", b"b", b" ", b"\t", b":", b"(", b"\x80", b"\xff", b"%2e"]
    rare = [b"\r", b"\x00", b"\x7f", b"\x0b", b"\n"]
    lines = []
    for _ in range(rng.randrange(0, 6)):
        value = b"".join(rng.choice(rare if rng.random() < 0.03 else values)
                         for _ in range(rng.randrange(0, 12)))
        name = rng.choice(names) if rng.random() < 0.3 else b"X-A"
        colon = b":" if rng.random() < 0.95 else b""
        lines.append(name + colon + value + rng.choice([b"\r\n", b"\n"]))
    return b"".join(lines) + rng.choice([b"\r\n", b"\n"])


@pytest.mark.parametrize("seed", range(10))
def test_quick_and_line_by_line_readings_agree_on_random_blocks(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        block = _random_block(rng)
        raw = b"GET / HTTP/1.1\r\n" + block
        try:
            expected = _fields(block)
        except BadRequest:
            assert _fields_fast(raw, 16) is None, block
        else:
            assert _fields_fast(raw, 16) == expected, block
