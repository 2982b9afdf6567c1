"""Disconnects, stops, restarts and bursts: the router and connector recover and drain."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest
import requests
from crank_test_support import LOOPBACK, deterministic_bytes, wait_for


def url(router, path: str) -> str:
    return f"http://{LOOPBACK}:{router.http_port}{path}"


def get(router, path: str, timeout: float = 10.0) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(url(router, path), timeout=timeout)


def assert_serves(router, route: str = "svc", count: int = 3) -> None:
    for i in range(count):
        resp = get(router, f"/{route}/bytes/{500 + i}?seed={i}")
        assert resp.status_code == 200
        assert resp.content == deterministic_bytes(500 + i, i)


def read_at_least(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(data)} bytes"
        data += chunk
    return data


def test_client_disconnect_mid_response_frees_socket(router, target, connector_factory):
    connector_factory(target, route="svc")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /svc/endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = read_at_least(sock, 200 * 1024)
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    # the router tells the connector (1001), the connector cancels the target request
    wait_for(target.endless_aborted.is_set, what="target request cancelled after client left")
    assert not target.endless_finished.is_set()
    wait_for(lambda: router.idle_sockets("svc") >= 2, what="svc window restored")
    assert_serves(router)


def test_client_disconnect_closes_connector_socket_with_1001(router, fake_connector_factory):
    fake = fake_connector_factory(router, "fakestream")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /fakestream/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fake.recv_request()
        fake.send_head(200, "OK", (("Content-Type", "application/octet-stream"),))
        fake.send_body(b"s" * 65536)
        read_at_least(sock, 1024)
    finally:
        sock.close()
    assert fake.wait_for_close_code(keep_sending=b"s" * 65536) == 1001


def test_connector_killed_mid_response(router, target_factory, connector_factory):
    first = target_factory("first")
    conn = connector_factory(first, route="svc")
    http_conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        http_conn.request("GET", "/svc/endless")
        resp = http_conn.getresponse()
        assert resp.status == 200
        assert len(resp.read(100 * 1024)) == 100 * 1024
        finished_in_time = connector_factory.stop(conn, timeout=0)
        assert finished_in_time is False, "stop(timeout=0) with a request in flight reported True"
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            while resp.read(65536):
                pass
    finally:
        http_conn.close()
    second = target_factory("second")
    connector_factory(second, route="svc")
    resp = get(router, "/svc/headers/after")
    assert resp.status_code == 200
    assert resp.headers["X-Target-Name"] == "second"


def test_fake_connector_lost_mid_body(router, target, connector_factory, fake_connector_factory):
    connector_factory(target, route="svc")
    fake = fake_connector_factory(router, "fakedrop")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    try:
        sock.sendall(b"GET /fakedrop/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fake.recv_request()
        fake.send_head(200, "OK", (("Content-Length", "50000"),))
        fake.send_body(b"f" * 5000)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read(5000) == b"f" * 5000
        fake.abort()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        sock.close()
    assert_serves(router)


@pytest.mark.timeout(90)
def test_router_restart_connector_reconnects(router_factory, target, connector_factory):
    first = router_factory()
    http_port, registration_port = first.http_port, first.registration_port
    connector_factory(target, route="svc", routers=[first])
    assert_serves(first)

    router_factory.stop(first)
    wait_for(lambda: _port_free(http_port) and _port_free(registration_port),
             what="ports released by the stopped router")
    second = router_factory(http_port=http_port, registration_port=registration_port)
    assert (second.http_port, second.registration_port) == (http_port, registration_port)
    wait_for(lambda: second.idle_sockets("svc") >= 2, timeout=30,
             what="connector reconnected to the restarted router")
    assert_serves(second)


def _port_free(port: int) -> bool:
    """True when nothing listens on ``port`` (a connect is refused)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return False
    except OSError:
        return True


def test_burst_of_50_concurrent_requests_then_normal_service(router, target, connector_factory):
    connector_factory(target, route="svc")
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            resp = get(router, f"/svc/bytes/{2000 + i}?seed={i}", timeout=30)
            results[i] = (resp.status_code, resp.content)
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=one, args=(i,), name=f"test-burst-{i}") for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert len(results) == 50, f"only {len(results)} of 50 burst requests finished"
    errors = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not errors, f"burst requests without an answer: {errors}"
    for i, (status, body) in results.items():
        assert status in (200, 503), f"burst request {i}: {status}"
        if status == 200:
            assert body == deterministic_bytes(2000 + i, i)

    wait_for(lambda: router.idle_sockets("svc") >= 2, what="svc window restored after burst")
    for i in range(20):
        resp = get(router, f"/svc/bytes/100?seed={i}")
        assert resp.status_code == 200, f"sequential request {i} after burst"
        assert resp.content == deterministic_bytes(100, i)


def test_stop_drains_in_flight_request(router, target, connector_factory):
    conn = connector_factory(target, route="svc")
    slow: dict[str, object] = {}

    def slow_request() -> None:
        try:
            slow["resp"] = get(router, "/svc/slow?seconds=30", timeout=40)
        except Exception as err:
            slow["error"] = err

    slow_thread = threading.Thread(target=slow_request, name="test-slow-request")
    slow_thread.start()
    wait_for(lambda: target.received_for("/svc/slow"), what="slow request at the target")

    stop_result: dict[str, bool] = {}
    stopper = threading.Thread(
        target=lambda: stop_result.update(ok=connector_factory.stop(conn, timeout=10)),
        name="test-connector-stopper",
    )
    stopper.start()
    try:
        wait_for(lambda: router.idle_sockets("svc") == 0, what="idle sockets deregistered")
        assert stopper.is_alive(), f"stop() returned while a request was in flight: {stop_result}"
    finally:
        target.release.set()
    slow_thread.join(20)
    stopper.join(20)
    assert not slow_thread.is_alive() and not stopper.is_alive()
    assert "resp" in slow, f"slow request failed: {slow.get('error')!r}"
    assert slow["resp"].status_code == 200
    assert slow["resp"].content == b"slow done\n"
    assert stop_result == {"ok": True}
    assert conn.idle_count() == 0


def test_stop_without_traffic_deregisters(router, target, connector_factory):
    conn = connector_factory(target, route="svc")
    assert connector_factory.stop(conn, timeout=10) is True
    wait_for(lambda: router.idle_sockets("svc") == 0, what="idle sockets removed")
    assert conn.idle_count() == 0


def test_connector_registers_with_two_routers(router_factory, target, connector_factory):
    first = router_factory()
    second = router_factory()
    connector_factory(target, route="svc", routers=[first, second])
    assert_serves(first)
    assert_serves(second)
