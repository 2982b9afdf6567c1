"""Cranker v3 end to end: a real router, real v3 connectors and real stdlib HTTP targets.

Everything runs on 127.0.0.1 with port 0. Synchronisation is ``wait_for`` with a deadline; the
only sleeps are the tiny pauses of the deliberately slow reader in the memory test.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import socket
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from support import (
    DIE_MID_BODY_DECLARED,
    LOOPBACK,
    client_url,
    closed_port,
    deterministic_bytes,
    sha256,
    wait_for,
)

V3_ONLY = ("3.0",)


# --------------------------------------------------------------------------- helpers


def get(router: Any, path: str, timeout: float = 20, **kwargs: Any) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(client_url(router, path), timeout=timeout, **kwargs)


def v3_sockets(router: Any, route: str) -> list[Any]:
    return list(router.registry.snapshot().get(route, {}).get("v3", []))


def v1_idle_sockets(router: Any, route: str) -> list[Any]:
    return list(router.registry.snapshot().get(route, {}).get("idle", []))


def router_streams_in_flight(router: Any, route: str) -> int:
    return sum(s.session.inflight for s in v3_sockets(router, route))


def read_http_head(sock: socket.socket, limit: int = 65536) -> tuple[bytes, bytes]:
    """Read a response head from a raw socket: (head, bytes of the body already read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data[:200]!r}")
        data += chunk
        assert len(data) < limit, "response head too long"
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_at_least(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def assert_v3_route_serves(router: Any, route: str = "svc", seed: int = 5) -> None:
    resp = get(router, f"/{route}/bytes/3000?seed={seed}")
    assert resp.status_code == 200
    assert resp.content == deterministic_bytes(3000, seed)


@pytest.fixture
def v3svc(router, target, connector_factory):
    """A v3-only connector (two v3 sockets) serving route ``svc`` from the default target."""
    conn = connector_factory(target, route="svc", protocols=V3_ONLY)
    wait_for(lambda: len(v3_sockets(router, "svc")) == 2, what="two v3 sockets for svc")
    return conn


# --------------------------------------------------------------------------- a streaming target


BIG_CHUNK = 64 * 1024


def big_chunk(block: bytes, index: int) -> bytes:
    """Chunk ``index`` of the streaming target's body: distinct per index, so order matters."""
    return index.to_bytes(8, "big") + block[8:]


class _StreamHandler(http.server.BaseHTTPRequestHandler):
    """``GET /<route>/stream/<chunks>``: chunks * 64 KiB with Content-Length, generated as sent,
    so the target itself never holds the body (the memory test measures router + connector)."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        chunks = int(self.path.rstrip("/").split("/")[-1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(chunks * BIG_CHUNK))
        self.end_headers()
        try:
            for i in range(chunks):
                self.wfile.write(big_chunk(self.server.block, i))
        except OSError:
            self.close_connection = True


class StreamingTarget:
    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _StreamHandler)
        self.server.daemon_threads = True
        self.server.block = deterministic_bytes(BIG_CHUNK, 77)  # type: ignore[attr-defined]
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="test-streaming-target",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def streaming_target():
    svc = StreamingTarget()
    yield svc
    svc.stop()


# --------------------------------------------------------------------------- tests


def test_100_concurrent_requests_share_two_v3_sockets(router, target, v3svc):
    before = v3_sockets(router, "svc")
    assert len(before) == 2
    assert all(s.protocol == "cranker_3.0" for s in before)

    def one(i: int) -> tuple[int, int, bytes]:
        conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=30)
        try:
            conn.request("GET", f"/svc/bytes/{1000 + i * 37}?seed={i}")
            resp = conn.getresponse()
            return i, resp.status, resp.read()
        finally:
            conn.close()

    start = threading.Barrier(100, timeout=30)

    def synchronised(i: int) -> tuple[int, int, bytes]:
        start.wait()
        return one(i)

    with ThreadPoolExecutor(max_workers=100, thread_name_prefix="test-client") as pool:
        results = list(pool.map(synchronised, range(100)))

    for i, status, body in results:
        assert status == 200, f"request {i}"
        assert body == deterministic_bytes(1000 + i * 37, i), f"request {i} body"
    assert len(target.received_for("/svc/bytes/")) == 100
    # no per-request sockets: still exactly the same two v3 sockets, no v1 sockets at all
    after = router.registry.snapshot()["svc"]
    assert [id(s) for s in after["v3"]] == [id(s) for s in before]
    assert after["idle"] == [] and after["busy"] == []
    assert router.idle_sockets("svc") == 2
    wait_for(lambda: router_streams_in_flight(router, "svc") == 0, what="router streams ended")
    wait_for(lambda: v3svc.busy_count() == 0, what="connector streams ended")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocols", [V3_ONLY, ("1.0",)], ids=["v3", "v1"])
def test_50mb_slow_download_has_bounded_memory(router, streaming_target, connector_factory,
                                               protocols):
    """v3 is bounded by flow control; v1 by the router reading no further than its socket
    buffer, so the connector's writes block."""
    chunks = 800  # 50 MiB
    size = chunks * BIG_CHUNK
    expected = hashlib.sha256()
    for i in range(chunks):
        expected.update(big_chunk(streaming_target.server.block, i))
    connector_factory(streaming_target.url, route="big", protocols=protocols)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # no kernel autotuning
    sock.settimeout(30)
    buf = bytearray(64 * 1024)
    view = memoryview(buf)
    digest = hashlib.sha256()
    received = 0
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        sock.connect((LOOPBACK, router.http_port))
        sock.sendall(f"GET /big/stream/{chunks} HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode())
        head, rest = read_http_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert f"content-length: {size}".encode() in head.lower()
        digest.update(rest)
        received = len(rest)
        for _ in range(size):  # bounded: every pass reads at least one byte or ends
            if received >= size:
                break
            n = sock.recv_into(view, min(len(buf), size - received))
            if n == 0:
                break
            digest.update(view[:n])
            received += n
            time.sleep(0.001)  # a slow reader, not synchronisation
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
        sock.close()
    assert received == size
    assert digest.hexdigest() == expected.hexdigest()
    assert peak < 16 * 1024 * 1024, f"router + connector traced peak grew by {peak} bytes"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_10mb_upload_byte_exact(router, target, v3svc, framing):
    payload = deterministic_bytes(10 * 1024 * 1024, 11)
    if framing == "chunked":

        def pieces():
            for i in range(0, len(payload), 100_000):
                yield payload[i : i + 100_000]

        data: Any = pieces()
    else:
        data = payload
    with requests.Session() as s:
        s.trust_env = False
        resp = s.post(client_url(router, "/svc/sha256"), data=data, timeout=60)
    assert resp.status_code == 200
    assert resp.json() == {"length": len(payload), "sha256": sha256(payload)}
    rec = target.received_for("/svc/sha256")[-1]
    if framing == "chunked":
        assert "chunked" in ",".join(rec.header_values("Transfer-Encoding")).lower()
    else:
        assert rec.header_values("Content-Length") == [str(len(payload))]


def test_40000_char_header_arrives_intact(router, target, v3svc):
    value = deterministic_bytes(20_000, 4).hex()  # 40,000 characters: over two HEADER frames
    resp = get(router, "/svc/headers/long", headers={"X-Long": value})
    assert resp.status_code == 200
    seen = [v for n, v in resp.json()["headers"] if n.lower() == "x-long"]
    assert seen == [value]
    assert target.received_for("/svc/headers/long")[-1].header_values("X-Long") == [value]


def test_client_disconnect_mid_response_resets_stream(router, target, v3svc):
    before = [id(s) for s in v3_sockets(router, "svc")]
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /svc/endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = read_at_least(sock, 300 * 1024)
        assert data.startswith(b"HTTP/1.1 200")
        wait_for(lambda: v3svc.busy_count() == 1, what="one stream in flight at the connector")
    finally:
        sock.close()
    # the router resets the stream, the connector stops reading the target
    wait_for(target.endless_aborted.is_set, what="target request cancelled after client left")
    assert not target.endless_finished.is_set()
    wait_for(lambda: v3svc.busy_count() == 0, what="connector in-flight count back to 0")
    wait_for(lambda: router_streams_in_flight(router, "svc") == 0, what="router stream ended")
    # the v3 sockets survive a reset stream and serve the next requests
    assert [id(s) for s in v3_sockets(router, "svc")] == before
    for seed in range(4):
        assert_v3_route_serves(router, seed=seed)
    assert [id(s) for s in v3_sockets(router, "svc")] == before


def test_target_unreachable_is_502(router, connector_factory):
    connector_factory(f"http://{LOOPBACK}:{closed_port()}", route="down", protocols=V3_ONLY)
    before = [id(s) for s in v3_sockets(router, "down")]
    for _ in range(3):
        resp = get(router, "/down/anything")
        assert resp.status_code == 502
    assert [id(s) for s in v3_sockets(router, "down")] == before


def test_target_dying_mid_body_gives_incomplete_body(router, target, v3svc):
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        conn.request("GET", "/svc/die-mid-body")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises((http.client.IncompleteRead, ConnectionError)) as info:
            resp.read()
    finally:
        conn.close()
    if isinstance(info.value, http.client.IncompleteRead):
        assert len(info.value.partial) < DIE_MID_BODY_DECLARED
    wait_for(lambda: v3svc.busy_count() == 0, what="connector stream ended")
    assert_v3_route_serves(router)


def test_v1_and_v3_connectors_share_a_route(router, target_factory, connector_factory):
    old, new = target_factory("v1-target"), target_factory("v3-target")
    connector_factory(old, route="svc", protocols=("1.0",))
    connector_factory(new, route="svc", protocols=V3_ONLY)
    wait_for(lambda: router.idle_sockets("svc") >= 4, what="2 v1 + 2 v3 sockets on svc")
    names = []
    for i in range(40):
        resp = get(router, f"/svc/bytes/500?seed={i}")
        assert resp.status_code == 200, f"request {i}"
        assert resp.content == deterministic_bytes(500, i)
        names.append(resp.headers["X-Target-Name"])
    assert names.count("v1-target") > 0, names
    assert names.count("v3-target") > 0, names
    assert names.count("v1-target") + names.count("v3-target") == 40
    assert len(old.received_for("/svc/")) == names.count("v1-target")
    assert len(new.received_for("/svc/")) == names.count("v3-target")


def test_protocol_negotiation_with_real_connectors(router, target, connector_factory):
    connector_factory(target, route="both", protocols=("3.0", "1.0"))
    connector_factory(target, route="old", protocols=("1.0",))
    wait_for(lambda: len(v3_sockets(router, "both")) == 2, what="v3 sockets for 'both'")
    snap = router.registry.snapshot()
    assert [s.protocol for s in snap["both"]["v3"]] == ["cranker_3.0"] * 2
    assert snap["both"]["idle"] == [] and snap["both"]["busy"] == []
    assert [s.protocol for s in snap["old"]["idle"]] == ["cranker_1.0"] * 2
    assert snap["old"]["v3"] == []
    for route in ("both", "old"):
        assert_v3_route_serves(router, route)


def test_stop_drains_in_flight_v3_request(router, target, connector_factory):
    conn = connector_factory(target, route="svc", protocols=V3_ONLY)
    slow: dict[str, object] = {}

    def slow_request() -> None:
        try:
            slow["resp"] = get(router, "/svc/slow?seconds=30", timeout=40)
        except Exception as err:
            slow["error"] = err

    slow_thread = threading.Thread(target=slow_request, name="test-slow-request")
    slow_thread.start()
    stop_result: dict[str, bool] = {}
    stopper = threading.Thread(
        target=lambda: stop_result.update(ok=connector_factory.stop(conn, timeout=15)),
        name="test-connector-stopper",
    )
    try:
        wait_for(lambda: target.received_for("/svc/slow"), what="slow request at the target")
        wait_for(lambda: conn.busy_count() == 1, what="the slow stream in flight")
        stopper.start()
        wait_for(lambda: router.idle_sockets("svc") == 0, what="v3 sockets deregistered")
        assert stopper.is_alive(), f"stop() returned while a request was in flight: {stop_result}"
        assert "resp" not in slow and "error" not in slow
    finally:
        target.release.set()
        slow_thread.join(20)
        if stopper.is_alive() or stop_result:
            stopper.join(20)
    assert not slow_thread.is_alive() and not stopper.is_alive()
    assert "resp" in slow, f"slow request failed: {slow.get('error')!r}"
    assert slow["resp"].status_code == 200
    assert slow["resp"].content == b"slow done\n"
    assert stop_result == {"ok": True}
    assert conn.idle_count() == 0 and conn.busy_count() == 0


def test_domain_routing_beats_path_routing(router, target_factory, connector_factory):
    by_path, by_domain = target_factory("by-path"), target_factory("by-domain")
    connector_factory(by_path, route="svc", protocols=V3_ONLY)
    domain_conn = connector_factory(
        by_domain, route="other", protocols=V3_ONLY, domain="example.test", wait=False
    )
    wait_for(lambda: domain_conn.idle_count() >= 2, what="domain connector registered")

    def via_domain() -> bool:
        resp = get(router, "/svc/headers/probe", headers={"Host": "example.test"})
        return resp.status_code == 200 and resp.headers["X-Target-Name"] == "by-domain"

    wait_for(via_domain, what="router routing Host example.test to the domain connector")
    for host in ("example.test", f"example.test:{router.http_port}", "EXAMPLE.test"):
        resp = get(router, "/svc/headers/x", headers={"Host": host})
        assert resp.status_code == 200, host
        assert resp.headers["X-Target-Name"] == "by-domain", host
        assert [v for n, v in json.loads(resp.content)["headers"] if n.lower() == "host"] == [host]
    # other hosts still go by path
    resp = get(router, "/svc/headers/y")
    assert resp.status_code == 200
    assert resp.headers["X-Target-Name"] == "by-path"
    assert by_path.received_for("/svc/headers/y")
    assert not by_domain.received_for("/svc/headers/y")


@pytest.mark.parametrize("size", [65536, 131072, 131073, 200000])
def test_last_chunk_that_fills_the_window_still_ends_the_stream(router, target, v3svc, size):
    """The connector holds the final DATA back to send it with END_STREAM; that final chunk
    may take the unacknowledged count over 64 KiB, and the end must still go out (a stall
    here hangs the client until the idle timeout)."""
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        for i in range(5):
            conn.request("GET", f"/svc/bytes/{size}?seed={i}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == deterministic_bytes(size, i)
    finally:
        conn.close()
