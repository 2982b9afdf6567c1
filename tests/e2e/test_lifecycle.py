"""Disconnects, stops, restarts and bursts: the router and connector recover and drain."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import threading

import pytest
import requests
from support import LOOPBACK, both_protocols, client_url, deterministic_bytes, wait_for


def get(router, path: str, timeout: float = 10.0) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(client_url(router, path), timeout=timeout)


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


@both_protocols
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


@both_protocols
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
@both_protocols
def test_router_restart_connector_reconnects(router_factory, target, connector_factory):
    first = router_factory()
    http_port, registration_port = first.http_port, first.registration_port
    connector_factory(target, route="svc", routers=[first])
    assert_serves(first)

    router_factory.stop(first)
    wait_for(
        lambda: _port_free(http_port) and _port_free(registration_port),
        what="ports released by the stopped router",
    )
    second = router_factory(http_port=http_port, registration_port=registration_port)
    assert (second.http_port, second.registration_port) == (http_port, registration_port)
    wait_for(
        lambda: second.idle_sockets("svc") >= 2,
        timeout=30,
        what="connector reconnected to the restarted router",
    )
    assert_serves(second)


def _port_free(port: int) -> bool:
    """True when nothing listens on ``port`` (a connect is refused)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return False
    except OSError:
        return True


@both_protocols
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


@both_protocols
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


@both_protocols
def test_stop_without_traffic_deregisters(router, target, connector_factory):
    conn = connector_factory(target, route="svc")
    assert connector_factory.stop(conn, timeout=10) is True
    wait_for(lambda: router.idle_sockets("svc") == 0, what="idle sockets removed")
    assert conn.idle_count() == 0


@both_protocols
def test_connector_registers_with_two_routers(router_factory, target, connector_factory):
    first = router_factory()
    second = router_factory()
    connector_factory(target, route="svc", routers=[first, second])
    assert_serves(first)
    assert_serves(second)


@both_protocols
def test_stop_right_after_traffic_is_clean(router, target, connector_factory):
    """Stopping while replacement sockets are still connecting must not leave any behind."""
    for i in range(20):
        conn = connector_factory(target, route="svc")
        assert_serves(router, count=1)
        assert connector_factory.stop(conn, timeout=10) is True, f"iteration {i}"
        wait_for(lambda: router.idle_sockets("svc") == 0, what="no idle sockets after stop")


class SilentRouter:
    """Accepts websocket registrations, then never sends a byte; refuses deregistration.

    Stands in for a router that is hung or unreachable at stop time: the connector has to close
    its idle sockets itself.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.05)
        self.registration_port = self._listener.getsockname()[1]
        self.registered: list[socket.socket] = []
        self.deregister_attempts = 0
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="test-silent-router")
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
            except OSError:
                conn.close()
                continue
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if " /register" not in lines[0]:
                self.deregister_attempts += 1
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                conn.close()
                continue
            accept = base64.b64encode(
                hashlib.sha1(
                    headers["sec-websocket-key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                ).digest()
            )
            response = (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
                b"CrankerProtocol: 1.0\r\n"
            )
            if "cranker_1.0" in headers.get("sec-websocket-protocol", "").lower():
                response += b"Sec-WebSocket-Protocol: cranker_1.0\r\n"
            conn.sendall(response + b"\r\n")
            self.registered.append(conn)

    def close(self) -> None:
        self._running = False
        self._thread.join(5)
        self._listener.close()
        for conn in self.registered:
            conn.close()


@pytest.fixture
def silent_router():
    router = SilentRouter()
    yield router
    router.close()


def test_stop_closes_idle_sockets_the_router_never_closes(silent_router, target, connector_factory):
    """Nothing in flight: stop() must return True promptly even if the router ignores us."""
    conn = connector_factory(
        target, route="svc", routers=[silent_router], protocols=("1.0",), wait=False
    )
    wait_for(lambda: len(silent_router.registered) >= 2, what="two registrations")
    wait_for(lambda: conn.idle_count() >= 2, what="connector sees two idle sockets")
    assert connector_factory.stop(conn, timeout=5) is True
    assert conn.idle_count() == 0


def _slow_client(router) -> tuple[threading.Thread, dict]:
    slow: dict[str, object] = {}

    def run() -> None:
        try:
            slow["resp"] = get(router, "/svc/slow?seconds=30", timeout=40)
        except Exception as err:
            slow["error"] = err

    client = threading.Thread(target=run, name="test-slow-client")
    client.start()
    return client, slow


@both_protocols
def test_router_stop_drains_in_flight_request(router_factory, target, connector_factory):
    router = router_factory()
    http_port = router.http_port
    connector_factory(target, route="svc", routers=[router])
    client, slow = _slow_client(router)
    wait_for(lambda: target.received_for("/svc/slow"), what="slow request at the target")

    result: dict[str, object] = {}
    stopper = threading.Thread(
        target=lambda: result.update(ok=router_factory.stop(router, timeout=10)),
        name="test-router-stopper",
    )
    stopper.start()
    try:
        wait_for(lambda: _port_free(http_port), what="client port closed while draining")
        assert stopper.is_alive(), f"router.stop() returned with a request in flight: {result}"
    finally:
        target.release.set()
    client.join(20)
    stopper.join(20)
    assert not client.is_alive() and not stopper.is_alive()
    assert "resp" in slow, f"in-flight request failed during drain: {slow.get('error')!r}"
    assert slow["resp"].status_code == 200
    assert slow["resp"].content == b"slow done\n"
    assert result == {"ok": True}


@both_protocols
def test_router_stop_drain_deadline_does_not_hang(router_factory, target, connector_factory):
    router = router_factory()
    connector_factory(target, route="svc", routers=[router])
    client, slow = _slow_client(router)
    wait_for(lambda: target.received_for("/svc/slow"), what="slow request at the target")
    try:
        assert router_factory.stop(router, timeout=0.5) is False
        client.join(20)
        assert not client.is_alive(), "client still waiting after the router stopped"
    finally:
        target.release.set()
    # the client got an error status or a broken connection, never a 200 or a hang
    if "resp" in slow:
        assert slow["resp"].status_code >= 500
    else:
        assert "error" in slow


def test_connector_notices_a_silent_router_and_reconnects(silent_router, target,
                                                          connector_factory):
    """A router that stops answering pings is noticed (no frame for two ping intervals) and
    the connector registers fresh sockets."""
    connector_factory(target, route="svc", routers=[silent_router], protocols=("1.0",),
                      sliding_window=1, ping_interval=0.2, wait=False)
    wait_for(lambda: len(silent_router.registered) >= 1, what="first registration")
    wait_for(lambda: len(silent_router.registered) >= 3,
             what="the connector giving up on the silent socket and registering again")


def test_router_closes_an_idle_socket_whose_connector_stops_answering_pings(router_factory):
    """websocket-client answers pings only inside recv(): a fake connector that never calls
    it stands for a hung connector; the router must drop its idle socket."""
    import websocket

    router = router_factory(ping_interval=0.2)
    ws = websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/register/?connectorInstanceID=hung",
        header=["Route: hung", "CrankerProtocol: 1.0"], timeout=5)
    try:
        wait_for(lambda: router.idle_sockets("hung") == 1, what="the socket registered")
        wait_for(lambda: router.idle_sockets("hung") == 0,
                 what="the router dropping the socket that never answers pings")
    finally:
        ws.shutdown()


def test_a_stopped_router_refuses_to_start_again(router_factory, target, connector_factory):
    router = router_factory()
    connector_factory(target, route="svc", routers=[router])
    assert_serves(router)
    assert router_factory.stop(router) is True
    with pytest.raises(RuntimeError, match="cannot start again"):
        router.start()
    assert router.stop() is True  # still stopped: a second stop has nothing to do


def test_router_takes_keyword_options_or_a_config_not_both():
    from crank_sync import Router, RouterConfig

    by_keyword = Router(http_port=0, registration_port=0, idle_timeout=7.0)
    assert by_keyword.config == RouterConfig(http_port=0, registration_port=0, idle_timeout=7.0)
    config = RouterConfig(http_port=0, registration_port=0)
    assert Router(config).config is config
    with pytest.raises(TypeError, match="not both"):
        Router(config, idle_timeout=7.0)
    with pytest.raises(TypeError):
        Router(no_such_option=1)
    with by_keyword, requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{by_keyword.registration_port}/health", timeout=10)
        assert resp.status_code == 200
