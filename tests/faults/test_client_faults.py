"""Clients that misbehave, against a router and a connector in their own processes: clients
that go away mid-upload, mid-download or while waiting for the head; slow and stopped readers;
slowloris on the client port and on the registration port.

After each fault the router and the connector are back to their baselines of threads and
descriptors (``support.processes``).
"""
from __future__ import annotations

import array
import fcntl
import hashlib
import http.client
import select
import socket
import termios
import time
from collections.abc import Callable

import pytest
from support import LOOPBACK, deterministic_bytes, sha256, wait_for
from support.processes import (
    V1,
    V3,
    get,
    in_thread,
    protocols,
    raw_request,
    serves,
    session,
    settled,
)

HOST = b"Host: 127.0.0.1\r\n"


def small_buffer_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so that a reader that stops stalls the
    router soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(20)
    sock.connect((LOOPBACK, port))
    return sock


def queued(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s kernel receive queue."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return buf[0]


def stalled_for(sock: socket.socket, seconds: float) -> Callable[[], bool]:
    """A condition: ``sock`` has bytes queued and the queue has not changed for ``seconds``."""
    last = {"size": -1, "since": time.monotonic()}

    def stalled() -> bool:
        size, now = queued(sock), time.monotonic()
        if size != last["size"]:
            last["size"], last["since"] = size, now
            return False
        return size > 0 and now - last["since"] >= seconds

    return stalled


# --------------------------------------------------------------------------- client cancels


def _complete_once(router, moment: str) -> None:
    """The same exchange as the fault, completed: warms up pools and parked threads."""
    with session() as s:
        if moment == "mid-upload":
            body = deterministic_bytes(1 << 20, 1)
            resp = s.post(f"{router.url}/svc/sha256", data=body, timeout=20)
            assert resp.json() == {"length": len(body), "sha256": sha256(body)}
        elif moment == "mid-download":
            resp = s.get(f"{router.url}/svc/bytes/{1 << 20}", timeout=20)
            assert len(resp.content) == 1 << 20
        else:
            resp = s.get(f"{router.url}/svc/slow?seconds=0", timeout=20)
            assert resp.content == b"slow done\n"


def _cancel_once(router, target, moment: str, round_: int) -> None:
    """Start the exchange, wait until the target has it, and close the client socket."""
    if moment == "mid-upload":
        path, head = "/svc/sha256", (b"POST /svc/sha256 HTTP/1.1\r\n" + HOST +
                                     b"Content-Length: 50000000\r\n\r\n")
    elif moment == "mid-download":
        path, head = "/svc/endless", b"GET /svc/endless HTTP/1.1\r\n" + HOST + b"\r\n"
    else:
        path, head = "/svc/slow", b"GET /svc/slow?seconds=120 HTTP/1.1\r\n" + HOST + b"\r\n"
    seen = len(target.received_for(path))
    target.endless_aborted.clear()
    sock = raw_request(router.http_port, head)
    resp = http.client.HTTPResponse(sock, method="GET")
    try:
        if moment == "mid-upload":
            sock.sendall(deterministic_bytes(1 << 20, round_))
        wait_for(lambda: len(target.received_for(path)) > seen, what=f"{path} at the target")
        if moment == "mid-download":
            resp.begin()
            assert resp.status == 200
            assert len(resp.read(1 << 20)) == 1 << 20
    finally:
        resp.close()  # its file holds the socket open: closed both, the descriptor goes
        sock.close()
    if moment == "mid-download":
        # the connector cancelled its request: the target's write failed
        wait_for(target.endless_aborted.is_set, timeout=20,
                 what="the endless download cancelled at the target")


@protocols
@pytest.mark.parametrize("moment", ["mid-upload", "mid-download", "while-waiting"])
@pytest.mark.timeout(90)
def test_client_cancel(procs, target, protocol, moment):
    """A client that hangs up mid-upload, mid-download or before the head costs the router and
    the connector nothing once the exchange is over, and the route keeps serving."""
    router = procs.router()
    conn = procs.connector(router, target, protocol)
    _complete_once(router, moment)
    conn.registered(router)
    base_router, base_conn = router.usage(), conn.usage()
    for round_ in range(4):
        _cancel_once(router, target, moment, round_)
        conn.quiet(router)
    # the slow target answers only after 120 s: only a cancelled exchange ends before that
    settled(router, base_router, f"four clients gone {moment}", timeout=30)
    settled(conn, base_conn, f"four clients gone {moment}", timeout=30)
    serves(router)


# --------------------------------------------------------------------------- slow and stopped


@protocols
@pytest.mark.timeout(90)
def test_slow_reader_gets_every_byte(procs, target, protocol):
    """A client reading 4 MB in small paced reads through a small receive buffer gets it whole
    while other requests on the route are answered."""
    router = procs.router()
    procs.connector(router, target, protocol)
    size, seed = 4 << 20, 5
    sock = small_buffer_socket(router.http_port)
    resp = http.client.HTTPResponse(sock, method="GET")
    try:
        sock.sendall(f"GET /svc/bytes/{size}?seed={seed} HTTP/1.1\r\n".encode() + HOST + b"\r\n")
        resp.begin()
        assert resp.status == 200
        digest, got, reads = hashlib.sha256(), 0, 0
        while chunk := resp.read(16 * 1024):
            digest.update(chunk)
            got += len(chunk)
            reads += 1
            if reads % 64 == 0:
                serves(router, times=1)
            time.sleep(0.002)  # pacing the reader, not waiting for anything
        assert got == size
        assert digest.hexdigest() == sha256(deterministic_bytes(size, seed))
    finally:
        resp.close()
        sock.close()


def _stop_reading_once(router, conn, target, protocol: str) -> None:
    """A client stops reading an endless download; five requests of other clients on the same
    route are answered meanwhile; then the stopped client goes away."""
    target.endless_aborted.clear()
    sock = small_buffer_socket(router.http_port)
    resp = http.client.HTTPResponse(sock, method="GET")
    try:
        sock.sendall(b"GET /svc/endless HTTP/1.1\r\n" + HOST + b"\r\n")
        resp.begin()
        assert resp.status == 200
        assert len(resp.read(64 * 1024)) == 64 * 1024
        wait_for(stalled_for(sock, 1.0), timeout=30,
                 what="the stopped client's receive queue full and standing still")
        if protocol == V1:
            conn.registered(router)  # the stopped client's socket has been replaced
        for i in range(5):
            size = 1000 + 50_000 * i
            other = get(f"{router.url}/svc/bytes/{size}?seed={i}", timeout=15)
            assert other.status_code == 200, (other.status_code, other.text[:200])
            assert other.content == deterministic_bytes(size, i)
    finally:
        resp.close()
        sock.close()
    wait_for(target.endless_aborted.is_set, timeout=20,
             what="the stopped client's download cancelled at the target")
    conn.quiet(router)


@protocols
@pytest.mark.timeout(120)
def test_stopped_reader_holds_back_no_other_request(procs, target, protocol):
    """A client stops reading an endless download (the router's writes to it block): other
    requests on the same route, over v3 on the same connector socket, are still answered.
    Once it has gone, three times over, the router and the connector are back to their
    baselines (taken after one such round, which leaves parked worker threads behind)."""
    router = procs.router()
    conn = procs.connector(router, target, protocol)
    _stop_reading_once(router, conn, target, protocol)
    base_router, base_conn = router.usage(), conn.usage()
    for _ in range(3):
        _stop_reading_once(router, conn, target, protocol)
    settled(router, base_router, "three stopped readers gone")
    settled(conn, base_conn, "three stopped readers gone")


# --------------------------------------------------------------------------- slowloris


class Tricklers:
    """Connections that send a request head one byte at a time, driven from one thread by
    :meth:`step`; ``closed`` counts those the server has closed."""

    def __init__(self, port: int, count: int, head: bytes) -> None:
        self.socks = [raw_request(port, head, timeout=5) for _ in range(count)]
        self.open = set(self.socks)

    def step(self) -> int:
        """One more byte on each open connection; how many are still open."""
        for sock in list(self.open):
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable and not sock.recv(65536):
                    self.open.discard(sock)
                    continue
                sock.sendall(b"s")
            except OSError:
                self.open.discard(sock)
        return len(self.open)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _slowloris(router, bystander: Callable[[], int]) -> None:
    """20 connections trickle a request head to each port while ``bystander`` runs on a
    thread (it returns the status of /health); every trickler must be closed by the router."""
    client = Tricklers(router.http_port, 20, b"GET /svc/bytes/1 HTTP/1.1\r\n" + HOST + b"X-Slow: ")
    registration = Tricklers(router.registration_port, 20,
                             b"GET /register/?connectorInstanceID=slow HTTP/1.1\r\n" + HOST +
                             b"Route: slow\r\nX-Slow: ")
    try:
        thread, out = in_thread(bystander, "test-slowloris-bystander")
        deadline = time.monotonic() + 30
        while (client.open or registration.open) and time.monotonic() < deadline:
            client.step()
            registration.step()
            time.sleep(0.2)  # the trickle's pace
        thread.join(30)
        assert out.get("result") == 200, out
        assert not client.open, f"{len(client.open)} trickling clients open on the client port"
        assert not registration.open, (f"{len(registration.open)} trickling connections open "
                                       "on the registration port")
    finally:
        client.close()
        registration.close()


def test_slowloris_on_both_ports(procs, target):
    """Connections trickling a request head on the client port and on the registration port
    are closed within the router's header timeout (2 s here) while requests, admin calls and
    a registration go on; after a second such attack the router is back to the baseline taken
    after the first (which leaves parked worker threads behind)."""
    router = procs.router()
    procs.connector(router, target, V3)
    health = f"http://{LOOPBACK}:{router.registration_port}/health"

    def first() -> int:
        serves(router, times=5)
        procs.connector(router, target, V1, route="svc2")
        serves(router, route="svc2")
        return get(health).status_code

    def second() -> int:
        serves(router, times=5)
        serves(router, route="svc2")
        return get(health).status_code

    _slowloris(router, first)
    baseline = router.usage()
    _slowloris(router, second)
    settled(router, baseline, "40 slowloris connections")
