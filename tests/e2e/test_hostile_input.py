"""Hostile input from clients and from connectors (issue 7, "Hostile input").

Clients speak through raw sockets, so the router sees exactly the bytes under test; connectors
that misbehave are scripted with websocket-client (v1) or raw v3 frames from
``crank_sync.protocol.v3``. Every socket is closed in a ``finally``; every wait has a deadline.
"""

from __future__ import annotations

import http.client
import logging
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket
from support import LOOPBACK, both_protocols, http_get, read_until_closed, wait_for
from websocket import ABNF

from crank_sync.protocol import v3

# --------------------------------------------------------------------------- raw client helpers


def read_one_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """The raw bytes of one response with a Content-Length (or up to the close)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def status_of(raw: bytes) -> int:
    first = raw.split(b"\r\n", 1)[0].split(b" ")
    assert len(first) >= 2 and first[0] == b"HTTP/1.1", f"not a response: {raw[:200]!r}"
    return int(first[1])


def send_raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the router may answer and close before reading everything
    return sock


def assert_refused_and_closed(router: Any, target: Any, request: bytes, status: int,
                              marker: str) -> None:
    """``request`` gets ``status``, the connection is closed after the response, and the target
    never sees the request (a normal request sent afterwards does arrive)."""
    sock = send_raw(router.http_port, request)
    try:
        raw, closed = read_until_closed(sock)
    finally:
        sock.close()
    assert raw, "no response at all"
    assert status_of(raw) == status, raw[:300]
    assert closed, "the router kept the connection open after refusing the request"
    assert http_get(router, "/svc/bytes/1").status_code == 200
    wait_for(lambda: any(r.path == "/svc/bytes/1" for r in target.received),
             what="the follow-up request at the target")
    assert not [r.path for r in target.received if marker in r.path], target.received


# --------------------------------------------------------------------------- smuggling shapes


SMUGGLING = [
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", id="cl-and-te"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n", id="te-and-cl"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Content-Length: 6\r\n\r\nhello!", id="two-content-lengths"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
                 id="content-length-list"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nhello\r\n0\r\n\r\n", id="chunk-size-zz"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"-1\r\nhello\r\n0\r\n\r\n", id="chunk-size-negative"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n", id="chunk-size-0x"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"1" * 40 + b"\r\nhello\r\n0\r\n\r\n", id="chunk-size-long"),
    pytest.param(b"POST /svc/echo/M HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", id="chunk-line-huge"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
                 id="obs-fold-space"),
    pytest.param(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n\ttwo\r\n\r\n",
                 id="obs-fold-tab"),
]


@both_protocols
@pytest.mark.parametrize("request_bytes", SMUGGLING)
def test_smuggling_shape_is_400_and_closed(router, target, svc, request_bytes):
    assert_refused_and_closed(router, target, request_bytes, 400, "/echo/M")


# --------------------------------------------------------------------------- limits and targets


def test_request_line_over_the_limit_is_414(router, target, svc):
    request = b"GET /svc/echo/M" + b"a" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert_refused_and_closed(router, target, request, 414, "/echo/M")


def test_headers_over_the_limit_are_431(router, target, svc):
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000) for i in range(70))
    request = b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"
    assert_refused_and_closed(router, target, request, 431, "/echo/M")


def test_head_cut_short_is_not_forwarded(router, target, svc):
    """A head that ends at EOF without its blank line is not a request (the slow-client
    deadline cuts heads short this way too)."""
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /svc/echo/M HTTP/1.1\r\nHost: a\r\nX-Cut: shor")
        sock.shutdown(socket.SHUT_WR)
        _, closed = read_until_closed(sock)
    finally:
        sock.close()
    assert closed
    assert http_get(router, "/svc/bytes/1").status_code == 200
    wait_for(lambda: any(r.path == "/svc/bytes/1" for r in target.received),
             what="the follow-up request at the target")
    assert not [r.path for r in target.received if "/echo/M" in r.path], target.received


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET http://example.com/svc/echo/M HTTP/1.1\r\nHost: example.com\r\n\r\n",
                     id="absolute-form"),
        pytest.param(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", id="asterisk-get"),
    ],
)
def test_target_not_in_origin_form_is_400(router, target, svc, request_bytes):
    sock = send_raw(router.http_port, request_bytes)
    try:
        raw = read_one_response(sock)
    finally:
        sock.close()
    assert status_of(raw) == 400, raw[:300]
    assert http_get(router, "/svc/bytes/1").status_code == 200
    wait_for(lambda: any(r.path == "/svc/bytes/1" for r in target.received),
             what="the follow-up request at the target")
    assert [r.path for r in target.received] == ["/svc/bytes/1"]


# --------------------------------------------------------------------------- hostile connectors


class FakeV3:
    """A scripted v3 connector: reads request frames and writes response frames itself."""

    def __init__(self, router: Any, route: str) -> None:
        self.ws = websocket.create_connection(
            f"ws://{LOOPBACK}:{router.registration_port}/register/"
            f"?connectorInstanceID=hostile-v3&componentName=hostile",
            header=[f"Route: {route}", "Sec-WebSocket-Protocol: cranker_3.0"],
            timeout=10,
        )

    def recv_request(self) -> int:
        """The stream id of the next complete request head."""
        assembler = v3.HeaderAssembler()
        for _ in range(1000):
            opcode, frame = self.ws.recv_data_frame(True)
            assert opcode != ABNF.OPCODE_CLOSE, "router closed the fake v3 socket"
            if opcode != ABNF.OPCODE_BINARY:
                continue
            decoded = v3.decode(frame.data)
            if decoded.type == v3.HEADER and assembler.feed(decoded) is not None:
                return decoded.stream_id
        raise AssertionError("no request head in 1000 frames")

    def send_head_text(self, stream_id: int, text: str) -> None:
        for frame in v3.header_frames(stream_id, text, end_stream=False):
            self.ws.send_binary(frame)
        self.ws.send_binary(v3.data_frame(stream_id, b"", end_stream=True))

    def abort(self) -> None:
        try:
            self.ws.shutdown()
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture
def fake_v3(router) -> Iterator[Any]:
    fakes: list[FakeV3] = []

    def make(route: str) -> FakeV3:
        before = router.idle_sockets(route)
        fake = FakeV3(router, route)
        fakes.append(fake)
        wait_for(lambda: router.idle_sockets(route) > before, what="fake v3 registered")
        return fake

    yield make
    for fake in fakes:
        fake.abort()


BAD_HEADS = [
    # A lone CR inside a value: "\n" ends a line in Cranker header text and a trailing "\r" is
    # tolerated, so "\r\n" is a line end there; a bare CR is what could split the client's head.
    pytest.param("HTTP/1.1 200 OK\nX-Evil:a\rX-Injected: 1\nContent-Length:0\n", id="cr"),
    pytest.param("HTTP/1.1 200 OK\nX-Evil:a\r\rX-Injected: 1\nContent-Length:0\n", id="cr-cr"),
    pytest.param("HTTP/1.1 200 OK\nX-Evil:a\x00X-Injected: 1\nContent-Length:0\n", id="nul"),
    pytest.param("HTTP/1.1 200 OK\nX Injected:1\nContent-Length:0\n", id="name-with-space"),
    pytest.param("HTTP/1.1 200 OK\nX-Big:" + "b" * (64 * 1024 + 10) + "\nContent-Length:0\n"
                 "X-Injected:1\n", id="head-over-64k"),
]


def client_response_to(router: Any, path: str, serve: Any) -> bytes:
    """Send a GET from a raw client, let ``serve()`` play the connector, return raw bytes."""
    sock = send_raw(router.http_port, f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    try:
        serve()
        return read_one_response(sock)
    finally:
        sock.close()


@pytest.mark.parametrize("head", BAD_HEADS)
def test_v1_connector_bad_response_head_is_502(router, fake_connector_factory, head):
    fake = fake_connector_factory(router, "svc")

    def serve() -> None:
        fake.recv_request()
        fake.send_text(head)

    raw = client_response_to(router, "/svc/x", serve)
    assert status_of(raw) == 502, raw[:300]
    assert b"X-Injected" not in raw and b"x-injected" not in raw.lower()
    assert b"\x00" not in raw


@pytest.mark.parametrize("head", BAD_HEADS)
def test_v3_connector_bad_response_head_is_502(router, fake_v3, head):
    fake = fake_v3("svc")

    def serve() -> None:
        stream_id = fake.recv_request()
        fake.send_head_text(stream_id, head)

    raw = client_response_to(router, "/svc/x", serve)
    assert status_of(raw) == 502, raw[:300]
    assert b"x-injected" not in raw.lower()
    assert b"\x00" not in raw


# --------------------------------------------------------------------------- slow clients


def _trickle(port: int, stop: threading.Event, closed: threading.Event) -> None:
    """Send a request head one byte per 0.3 s until the router closes the connection."""
    try:
        sock = socket.create_connection((LOOPBACK, port), timeout=10)
    except OSError:
        return
    try:
        sock.sendall(b"GET /svc/bytes/1 HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        for _ in range(200):  # at most a minute
            if stop.wait(0.3):
                return
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and not sock.recv(4096):
                closed.set()
                return
            sock.sendall(b"s")
    except OSError:
        closed.set()
    finally:
        sock.close()


@both_protocols
@pytest.mark.timeout(120)
def test_trickling_clients_are_timed_out_and_block_no_one(router_factory, target,
                                                          connector_factory):
    router = router_factory(header_timeout=2.0)
    connector_factory(target, route="svc", routers=[router])
    stop = threading.Event()
    closed = [threading.Event() for _ in range(50)]
    threads = [threading.Thread(target=_trickle, args=(router.http_port, stop, c),
                                name=f"test-trickle-{i}", daemon=True)
               for i, c in enumerate(closed)]
    try:
        for t in threads:
            t.start()
        with requests.Session() as s:
            s.trust_env = False
            for i in range(20):
                resp = s.get(f"http://{LOOPBACK}:{router.http_port}/svc/bytes/{i + 1}",
                             timeout=30)
                assert resp.status_code == 200 and len(resp.content) == i + 1
        wait_for(lambda: all(c.is_set() for c in closed), timeout=30,
                 what="all 50 trickling clients to be closed by header_timeout")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not [r for r in target.received if r.header_values("X-Slow")]


# --------------------------------------------------------------------------- registration floods


def raw_register(port: int) -> int:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", "/register/?connectorInstanceID=flood&componentName=flood", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Route": "flood",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
            "CrankerProtocol": "1.0",
        })
        resp = conn.getresponse()
        if resp.status != 101:
            resp.read()
        return resp.status
    finally:
        conn.close()


@both_protocols
def test_registration_flood_is_rate_limited(router_factory, target, connector_factory, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = router_factory(registration_rate_limit=2.0)
    statuses = [raw_register(router.registration_port) for _ in range(20)]
    assert 429 in statuses and 101 in statuses, statuses
    assert set(statuses) <= {101, 429}, statuses
    assert any(r.name.startswith("crank_sync.router") and r.levelno >= logging.WARNING
               and "too many registrations" in r.getMessage() for r in caplog.records)
    wait_for(lambda: router.idle_sockets("flood") == 0, what="flood sockets to be dropped")
    # once the bucket refills, a well-behaved connector registers (it retries with backoff)
    connector_factory(target, route="svc", routers=[router])
    assert http_get(router, "/svc/bytes/2").status_code == 200
