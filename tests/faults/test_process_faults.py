"""Processes that die: a connector SIGKILLed before or during a response, a router restarted
at once and after an outage, a target that goes down and comes back.

Router and connectors are real processes (``support.processes``); after each fault the
survivors serve again and their threads and descriptors return to the baseline.
"""
from __future__ import annotations

import http.client
import socket
import threading

import pytest
from support import LOOPBACK, wait_for
from support.processes import (
    FD_SLACK,
    THREAD_SLACK,
    Peak,
    get,
    in_thread,
    protocols,
    raw_request,
    serves,
    settled,
)

ENDLESS = b"GET /svc/endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _read_until_aborted(resp: http.client.HTTPResponse) -> None:
    """Read an endless body until the router aborts the connection."""
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        while resp.read(65536):
            pass
        raise AssertionError("the endless response ended normally")


@protocols
@pytest.mark.parametrize("when", ["before-head", "mid-response"])
@pytest.mark.timeout(90)
def test_connector_sigkill(procs, target, protocol, when):
    """SIGKILL a connector with a request in flight: the client gets 502 (before the head) or
    an aborted body; the router drops the dead sockets, serves a new connector and is back to
    its baseline. (A GET whose v1 socket died before the head is retried on another socket:
    it waits at most 1 s for one here.)"""
    router = procs.router("--connector-max-wait", "1")
    conn = procs.connector(router, target, protocol)
    serves(router)
    baseline = router.usage()
    for round_ in range(2):
        if when == "mid-response":
            sock = raw_request(router.http_port, ENDLESS)
            resp = http.client.HTTPResponse(sock, method="GET")
            try:
                resp.begin()
                assert resp.status == 200
                assert len(resp.read(256 * 1024)) == 256 * 1024
                conn.kill()
                _read_until_aborted(resp)
            finally:
                resp.close()
                sock.close()
        else:
            thread, out = in_thread(lambda: get(f"{router.url}/svc/slow?seconds=60", timeout=30),
                                    "test-slow-client")
            wait_for(lambda n=round_ + 1: len(target.received_for("/svc/slow")) == n,
                     what="the slow request at the target")
            conn.kill()
            thread.join(30)
            assert out.get("result") is not None, out
            assert out["result"].status_code == 502, out["result"].text[:300]
        wait_for(lambda: router.sockets("svc") == 0, what="the killed connector's sockets gone")
        conn = procs.connector(router, target, protocol)
        serves(router)
    assert router.alive()
    settled(router, baseline, f"two connectors SIGKILLed {when}")


class HangUp:
    """A listener on ``port`` that accepts and closes every connection, counting them: a
    registration port that is there but no router (each connector attempt shows)."""

    def __init__(self, port: int) -> None:
        self.accepted = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, port))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-hang-up", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@protocols
@pytest.mark.parametrize("outage", [False, True], ids=["at-once", "after-outage"])
@pytest.mark.timeout(90)
def test_router_restart(procs, target, protocol, outage):
    """The router stops (SIGTERM, restarted at once) or dies (SIGKILL, then the connector's
    attempts fail for a while); a new router on the same ports gets the connector back, and
    the connector's threads and descriptors neither grow per attempt nor stay up."""
    router = procs.router()
    conn = procs.connector(router, target, protocol)
    serves(router)
    baseline = conn.usage()
    ports = (router.http_port, router.registration_port)
    peak = Peak(conn)
    try:
        for _ in range(2):
            if outage:
                router.kill()
                hang_up = HangUp(ports[1])
                try:
                    wait_for(lambda: hang_up.accepted >= 4, timeout=30,  # noqa: B023
                             what="four failed reconnect attempts")
                finally:
                    hang_up.close()
            else:
                assert router.terminate() == 0, router.log()
            router = procs.router(ports=ports)
            conn.registered(router, timeout=30)
            serves(router)
    finally:
        peak.stop()
    assert conn.alive()
    # while reconnecting, a connecting socket (and its thread) may exist beside the others
    assert peak.threads <= baseline.threads + THREAD_SLACK + conn.window, (peak.threads, baseline)
    assert peak.fds <= baseline.fds + FD_SLACK + conn.window, (peak.fds, baseline)
    settled(conn, baseline, "two router restarts")


def _target_down_and_back(procs, router, conn, target):
    target.kill()
    for _ in range(5):
        resp = get(f"{router.url}/svc/bytes/10")
        assert resp.status_code == 502, (resp.status_code, resp.text[:200])
        conn.quiet(router)
    target = procs.target(port=target.port)
    wait_for(lambda: get(f"{router.url}/svc/bytes/10").status_code == 200,
             what="requests succeed once the target is back")
    serves(router, times=5)
    conn.quiet(router)
    return target


@protocols
@pytest.mark.timeout(90)
def test_target_down_and_back(procs, protocol):
    """The target process dies: requests get 502 at once and the connector stays registered;
    the target comes back on its port and requests succeed again. Three times over, the
    connector and the router are back to the baseline taken after the first time."""
    target = procs.target()
    router = procs.router()
    conn = procs.connector(router, target, protocol)
    serves(router)
    target = _target_down_and_back(procs, router, conn, target)
    base_conn, base_router = conn.usage(), router.usage()
    for _ in range(2):
        target = _target_down_and_back(procs, router, conn, target)
    assert router.sockets("svc", conn.instance) >= conn.window
    settled(conn, base_conn, "the target down and back")
    settled(router, base_router, "the target down and back")
