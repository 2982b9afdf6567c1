"""In-process WSGI targets: a real router and a real connector calling a WSGI app, no local port.

Table-driven environ checks run against ``WsgiTarget.environ`` directly; everything else goes
client -> router -> connector -> app over real sockets, over Cranker v1 and v3.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from support import LOOPBACK, deterministic_bytes, raw_exchange, wait_for

from crank_sync import Connector
from crank_sync.connector.wsgi import RequestInput, WsgiTarget
from crank_sync.protocol import RequestHead

StartResponse = Callable[..., Any]

# --------------------------------------------------------------------------- environ table

ENVIRON_CASES = [
    # raw target, PATH_INFO, QUERY_STRING
    ("/svc/plain", "/svc/plain", ""),
    ("/svc/a%20b?x=1", "/svc/a b", "x=1"),
    ("/svc/a%2Fb/c", "/svc/a/b/c", ""),
    ("/svc/caf%C3%A9", "/svc/caf\u00c3\u00a9", ""),  # UTF-8 bytes, each as one latin-1 char
    ("/svc/x;p=1?q=%20&r=a%26b", "/svc/x;p=1", "q=%20&r=a%26b"),
    ("/svc/?", "/svc/", ""),
    ("/svc", "/svc", ""),
    ("/svc/a?b?c", "/svc/a", "b?c"),
    ("/svc/%7Euser/%25", "/svc/~user/%", ""),
]


def head(target: str, headers: Iterable[tuple[str, str]] = (), method: str = "GET",
         body: bool = False) -> RequestHead:
    return RequestHead(method=method, target=target, headers=tuple(headers),
                       marker="_1" if body else "_2")


@pytest.mark.parametrize(("target", "path_info", "query"), ENVIRON_CASES)
def test_environ_paths(target, path_info, query):
    env = WsgiTarget(lambda e, s: []).environ(head(target, [("Host", "h")]), RequestInput(None))
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == path_info
    assert env["QUERY_STRING"] == query
    assert env["REQUEST_URI"] == env["RAW_URI"] == target


@pytest.mark.parametrize(("script_name", "target", "script", "path_info"), [
    ("/svc", "/svc/a/b", "/svc", "/a/b"),
    ("/svc/", "/svc/a%2Fb", "/svc", "/a/b"),
    ("/svc", "/svc", "/svc", ""),
    ("/svc", "/svcx/a", "", "/svcx/a"),  # not under the mount point: whole path
    ("/svc/sub", "/svc/sub/x?y", "/svc/sub", "/x"),
])
def test_environ_script_name(script_name, target, script, path_info):
    env = WsgiTarget(lambda e, s: [], script_name=script_name).environ(head(target),
                                                                        RequestInput(None))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, path_info)


@pytest.mark.parametrize(("headers", "expected"), [
    ([("Host", "example.com:8443")], {"SERVER_NAME": "example.com", "SERVER_PORT": "8443"}),
    ([("Host", "example.com")], {"SERVER_NAME": "example.com", "SERVER_PORT": "80"}),
    ([("Host", "[::1]:9000")], {"SERVER_NAME": "::1", "SERVER_PORT": "9000"}),
    ([("Host", "h"), ("Forwarded", "for=10.1.2.3;host=h;proto=https;by=r")],
     {"SERVER_PORT": "443", "wsgi.url_scheme": "https", "REMOTE_ADDR": "10.1.2.3"}),
    ([("Forwarded", 'for=6.6.6.6;proto=https'), ("Forwarded", 'for="[2001:db8::1]:4711";proto=http')],
     {"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "4711", "wsgi.url_scheme": "http"}),
    ([("Forwarded", "for=6.6.6.6, for=10.0.0.9;proto=https")],
     {"REMOTE_ADDR": "10.0.0.9", "wsgi.url_scheme": "https"}),
    ([("Forwarded", 'for=unknown;by="a;b"')], {"REMOTE_ADDR": None}),
    ([("X-Forwarded-For", "1.1.1.1, 10.0.0.2"), ("X-Forwarded-Proto", "https")],
     {"REMOTE_ADDR": "10.0.0.2", "wsgi.url_scheme": "https"}),
    ([("X-Multi", "a"), ("x-multi", "b"), ("Cookie", "a=1"), ("Cookie", "b=2")],
     {"HTTP_X_MULTI": "a, b", "HTTP_COOKIE": "a=1; b=2"}),
    ([("X_Sneaky", "1"), ("X-Sneaky", "2")], {"HTTP_X_SNEAKY": "2"}),
    ([("Content-Type", "text/plain"), ("Content-Length", "5")],
     {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5", "HTTP_CONTENT_LENGTH": None}),
    ([("X-Utf8", "caf\u00e9")], {"HTTP_X_UTF8": "caf\u00c3\u00a9"}),
    ([], {"SERVER_NAME": "localhost", "wsgi.url_scheme": "http", "REMOTE_ADDR": None}),
])
def test_environ_headers(headers, expected):
    env = WsgiTarget(lambda e, s: []).environ(head("/svc/x", headers), RequestInput(None))
    for key, value in expected.items():
        assert env.get(key) == value, key
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_environ_chunked_upload_has_no_content_length():
    env = WsgiTarget(lambda e, s: []).environ(head("/svc/x", method="POST", body=True),
                                              RequestInput([b"ab"]))
    assert "CONTENT_LENGTH" not in env
    assert env["wsgi.input_terminated"] is True


def test_request_input_file_methods():
    stream = RequestInput([b"line one\nli", b"", b"ne two\n", b"tail"])
    assert stream.readline() == b"line one\n"
    assert stream.readline(3) == b"lin"
    assert stream.read(5) == b"e two"
    assert list(stream) == [b"\n", b"tail"]
    assert stream.read() == b""
    assert RequestInput([b"a\nb\nc"]).readlines() == [b"a\n", b"b\n", b"c"]
    assert RequestInput([b"abc", b"def"]).read() == b"abcdef"


# --------------------------------------------------------------------------- the test app


class Probe:
    """A WSGI app with one behaviour per path, recording what the tests need to see."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.go_on = threading.Event()
        self.first_part_seen = threading.Event()
        self.environs: list[dict[str, Any]] = []
        self.max_buffered = 0
        self.body_seen = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.environs.append(environ)
        name = environ["PATH_INFO"].split("/")[2]
        return getattr(self, "ep_" + name.replace("-", "_"))(environ, start_response)

    def _tracked(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        try:
            yield from chunks
        finally:
            self.closed.set()

    def ep_environ(self, environ, start_response):
        keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI",
                "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "wsgi.url_scheme", "CONTENT_LENGTH",
                "CONTENT_TYPE", "HTTP_X_MULTI", "HTTP_COOKIE", "HTTP_X_UNDER",
                "wsgi.input_terminated", "wsgi.multithread")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def ep_upload(self, environ, start_response):
        stream = environ["wsgi.input"]
        digest = hashlib.sha256()
        while True:
            data = stream.read(65536)
            self.max_buffered = max(self.max_buffered, len(stream._buf))
            if not data:
                break
            digest.update(data)
            self.body_seen += len(data)
            if self.body_seen >= 100_000:
                self.first_part_seen.set()
        body = json.dumps({"length": self.body_seen, "sha256": digest.hexdigest(),
                           "content_length": environ.get("CONTENT_LENGTH"),
                           "terminated": environ.get("wsgi.input_terminated")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    def ep_stream(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"first\n"
            if not self.go_on.wait(20):
                raise RuntimeError("test never released the stream")
            yield b"second\n"
        return self._tracked(gen())

    def ep_endless(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def gen():
            while True:
                yield b"e" * 65536
        return self._tracked(gen())

    def ep_write(self, environ, start_response):
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(40):
            write(deterministic_bytes(50_000, i))
        return self._tracked([b"tail"])

    def ep_fail_before(self, environ, start_response):
        raise RuntimeError("boom before start_response")

    def ep_fail_first_chunk(self, environ, start_response):
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            raise RuntimeError("boom before the first chunk")
            yield b""  # pragma: no cover
        return self._tracked(gen())

    def ep_fail_after(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"partial " * 1000
            raise RuntimeError("boom mid-body")
        return self._tracked(gen())

    def ep_short(self, environ, start_response):
        start_response("200 OK", [("Content-Length", "1000")])
        return self._tracked([b"only ten b"])

    def ep_file(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper = environ["wsgi.file_wrapper"](open(environ["QUERY_STRING"], "rb"), 8192)
        self.file_wrapper = wrapper
        return wrapper

    def ep_ignore_body(self, environ, start_response):
        start_response("413 Payload Too Large", [("Content-Type", "text/plain")])
        return self._tracked([b"too big\n"])

    def ep_cookies(self, environ, start_response):
        start_response("302 Found", [("Location", "/svc/environ"),
                                     ("Set-Cookie", "a=1; Path=/"),
                                     ("Set-Cookie", "b=2; Path=/")])
        return [b""]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=[("1.0",), ("3.0",)], ids=["v1", "v3"])
def protocols(request) -> tuple[str, ...]:
    return request.param


@pytest.fixture
def wsgi_connector(router, protocols) -> Iterator[Callable[..., Connector]]:
    """Start a connector for a WSGI app on route ``svc``; stopped (and checked) at teardown."""
    started: list[Connector] = []

    def start(app: Any, target: WsgiTarget | None = None, route: str = "svc") -> Connector:
        conn = Connector(target=app, route=route,
                         routers=[f"ws://{LOOPBACK}:{router.registration_port}"],
                         protocols=protocols, sliding_window=2, v3_sockets=2)
        if target is not None:
            conn.target = target  # until Connector accepts a ready Target instance
        started.append(conn)
        conn.start()
        wait_for(lambda: router.idle_sockets(route) >= 2, what="connector registered")
        return conn

    yield start
    results = [conn.stop(timeout=10) for conn in started]
    assert all(results), "connector stop() did not finish in time"


@pytest.fixture
def probe(wsgi_connector) -> Probe:
    app = Probe()
    wsgi_connector(app)
    return app


def conn_to(router) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=10)


def get(router, path: str, method: str = "GET", body: Any = None,
        headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = conn_to(router)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- end to end


def test_environ_through_the_tunnel(router, probe):
    status, _, body = raw_exchange(router.http_port, (
        b"GET /svc/environ/a%20b%2Fc?q=%20&x HTTP/1.1\r\nHost: example.com:8080\r\n"
        b"X-Multi: a\r\nX-Multi: b\r\nX_Under: 1\r\nCookie: c=1\r\nCookie: d=2\r\n"
        b"Connection: close\r\n\r\n"))
    assert status == 200
    env = json.loads(body)
    assert env["PATH_INFO"] == "/svc/environ/a b/c"
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "q=%20&x"
    assert env["REQUEST_URI"] == "/svc/environ/a%20b%2Fc?q=%20&x"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_MULTI"] == "a, b"
    assert env["HTTP_COOKIE"] == "c=1; d=2"
    assert env["HTTP_X_UNDER"] is None
    assert env["wsgi.multithread"] is True


def test_script_name(router, wsgi_connector):
    app = Probe()
    wsgi_connector(app, WsgiTarget(lambda e, s: app(dict(e, PATH_INFO="/x" + e["PATH_INFO"]), s),
                                   script_name="/svc"))
    resp, body = get(router, "/svc/environ/p?z=1")
    env = json.loads(body)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/svc", "/x/environ/p")


def test_streaming_upload_with_content_length(router, probe):
    size = 16 * 1024 * 1024
    payload = deterministic_bytes(size, 5)
    conn = conn_to(router)
    try:
        conn.putrequest("POST", "/svc/upload")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        conn.send(payload[:1_000_000])
        # the app reads the body while the client is still sending it
        wait_for(probe.first_part_seen.is_set, what="the app to see the first part")
        conn.send(payload[1_000_000:])
        result = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert result == {"length": size, "sha256": hashlib.sha256(payload).hexdigest(),
                      "content_length": str(size), "terminated": True}
    assert probe.max_buffered <= 1024 * 1024  # never more than about one tunnel chunk held


def test_chunked_upload(router, probe):
    parts = [deterministic_bytes(70_000, i) for i in range(20)]
    resp, body = get(router, "/svc/upload", "POST", body=iter(parts))  # http.client chunks it
    result = json.loads(body)
    assert result["length"] == sum(map(len, parts))
    assert result["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert result["content_length"] is None and result["terminated"] is True


def test_streaming_response(router, probe):
    conn = conn_to(router)
    try:
        conn.request("GET", "/svc/stream")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.read1(100) == b"first\n"  # arrives while the app is still producing
        probe.go_on.set()
        assert resp.read() == b"second\n"
    finally:
        conn.close()
    wait_for(probe.closed.is_set, what="close() on the app iterable")


def test_write_callable(router, probe):
    resp, body = get(router, "/svc/write")
    assert resp.status == 200
    assert body == b"".join(deterministic_bytes(50_000, i) for i in range(40)) + b"tail"
    wait_for(probe.closed.is_set, what="close() on the app iterable")


def test_write_callable_spools_past_the_buffer(router, wsgi_connector):
    app = Probe()
    wsgi_connector(app, WsgiTarget(app, write_buffer=64 * 1024))
    resp, body = get(router, "/svc/write")
    assert body == b"".join(deterministic_bytes(50_000, i) for i in range(40)) + b"tail"


def test_file_wrapper(router, probe, tmp_path):
    path = tmp_path / "served.bin"
    data = deterministic_bytes(300_000, 9)
    path.write_bytes(data)
    resp, body = get(router, f"/svc/file?{path}")
    assert body == data
    wait_for(lambda: probe.file_wrapper.filelike.closed, what="the served file to be closed")


def test_close_called_when_the_client_goes_away(router, probe):
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /svc/endless HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 300_000:
            received += len(sock.recv(65536))
    finally:
        sock.close()
    wait_for(probe.closed.is_set, what="close() after the client disconnected")


def test_exception_before_start_response_is_500(router, probe):
    resp, body = get(router, "/svc/fail-before")
    assert resp.status == 500
    assert body == b"Internal Server Error\n"


def test_exception_before_first_chunk_is_500(router, probe):
    resp, body = get(router, "/svc/fail-first-chunk")
    assert resp.status == 500
    wait_for(probe.closed.is_set, what="close() on the failed iterable")


@pytest.mark.parametrize("path", ["/svc/fail-after", "/svc/short"])
def test_failure_after_the_response_started_aborts(router, probe, path):
    conn = conn_to(router)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        conn.close()
    wait_for(probe.closed.is_set, what="close() on the failed iterable")


def test_unread_body_is_discarded(router, probe):
    resp, body = get(router, "/svc/ignore-body", "POST", body=deterministic_bytes(3_000_000))
    assert (resp.status, body) == (413, b"too big\n")
    resp, body = get(router, "/svc/environ")  # the connector still serves
    assert resp.status == 200


def test_head_request_closes_without_body(router, probe):
    resp, body = get(router, "/svc/stream", "HEAD")
    assert resp.status == 200 and body == b""
    wait_for(probe.closed.is_set, what="close() after HEAD")


def test_redirect_and_cookies_pass_through(router, probe):
    resp, body = get(router, "/svc/cookies")
    assert resp.status == 302  # the connector does not follow redirects
    assert resp.getheader("Location") == "/svc/environ"
    assert resp.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_concurrent_requests(router, probe):
    results: list[int] = []

    def one() -> None:
        resp, _ = get(router, "/svc/environ")
        results.append(resp.status)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [200] * 8


def test_stop_waits_for_a_streaming_response(router, wsgi_connector):
    app = Probe()
    conn = wsgi_connector(app)
    client = conn_to(router)
    try:
        client.request("GET", "/svc/stream")
        resp = client.getresponse()
        assert resp.read1(100) == b"first\n"
        stopper = threading.Thread(target=lambda: app.__dict__.update(stopped=conn.stop(10)))
        stopper.start()
        wait_for(lambda: router.idle_sockets("svc") == 0, what="deregistration")
        app.go_on.set()
        assert resp.read() == b"second\n"
        stopper.join(15)
    finally:
        client.close()
    assert app.stopped is True
