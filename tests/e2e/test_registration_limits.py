"""The registration port's defences against connections that never finish their head: the
``header_timeout`` deadline for the whole head, and caps on pending connections per address and
in all (``registration_max_pending_per_address``, ``registration_max_pending``).

127.0.0.2 and 127.0.0.3 are loopback addresses too (Linux routes all of 127/8 to lo): a client
socket bound to one of them is "another address" for the router.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from support import LOOPBACK, both_protocols, is_closed, wait_for

OTHER = "127.0.0.2"
THIRD = "127.0.0.3"


class Clients:
    """Raw client sockets to the registration port, each closed at teardown."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def open(self, port: int, source: str = LOOPBACK) -> socket.socket:
        sock = socket.create_connection((LOOPBACK, port), timeout=10, source_address=(source, 0))
        self.socks.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    made = Clients()
    yield made
    made.close()


def finish_health(sock: socket.socket) -> int:
    """Send a ``GET /health`` head on ``sock`` and return the status (0: connection failed)."""
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: router\r\n\r\n")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0


def http_get_status(router, path: str) -> int:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"http://{LOOPBACK}:{router.http_port}{path}", timeout=30).status_code


def _trickle(port: int, source: str, stop: threading.Event, closed: threading.Event) -> None:
    """A registration head sent one byte at a time, never finished (a bounded loop)."""
    try:
        sock = socket.create_connection((LOOPBACK, port), timeout=10, source_address=(source, 0))
    except OSError:
        closed.set()
        return
    try:
        sock.sendall(b"GET /register/?connectorInstanceID=slow HTTP/1.1\r\nX-Slow: ")
        for _ in range(600):
            if stop.wait(0.1):
                return
            if is_closed(sock):
                closed.set()
                return
            sock.sendall(b"s")
    except OSError:
        closed.set()
    finally:
        sock.close()


@both_protocols
@pytest.mark.timeout(120)
def test_trickling_registration_heads_are_closed_after_header_timeout(
        router_factory, target, connector_factory):
    # a cap above the twenty: here only the head deadline closes them
    router = router_factory(header_timeout=0.5, registration_max_pending_per_address=32)
    stop = threading.Event()
    closed = [threading.Event() for _ in range(20)]
    threads = [threading.Thread(target=_trickle,
                                args=(router.registration_port, LOOPBACK, stop, c),
                                name=f"test-trickle-{i}", daemon=True)
               for i, c in enumerate(closed)]
    try:
        for t in threads:
            t.start()
        # a byte every 0.1 s resets no per-read timeout: only the deadline for the whole head
        # closes them
        wait_for(lambda: all(c.is_set() for c in closed), timeout=30,
                 what="all 20 trickling registration clients to be closed by header_timeout")
        connector_factory(target, route="svc", routers=[router])
        assert http_get_status(router, "/svc/bytes/5") == 200
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_per_address_cap_closes_the_extra_connection(router_factory, target, connector_factory,
                                                     clients, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = router_factory(registration_max_pending_per_address=3, header_timeout=30.0)
    port = router.registration_port
    pending = [clients.open(port, OTHER) for _ in range(3)]
    extra = [clients.open(port, OTHER) for _ in range(10)]
    # the listener accepts in order: the first three are pending, every later one is closed
    wait_for(lambda: all(is_closed(s) for s in extra), what="connections over the cap closed")
    refusals = [r for r in caplog.records if "over the cap of pending" in r.getMessage()]
    assert refusals and OTHER in refusals[0].getMessage()
    assert refusals[0].levelno == logging.WARNING
    assert len(refusals) < len(extra), "one log line per refused connection"
    # another address is not affected: a real connector registers and serves
    connector_factory(target, route="svc", routers=[router])
    assert http_get_status(router, "/svc/bytes/5") == 200
    # once the used socket's replacement has registered, nothing of the connector's is pending
    wait_for(lambda: router.idle_sockets("svc") >= 2, what="the connector's window restored")
    # its registered websockets are not pending: three more heads from its address fit
    mine = [clients.open(port, LOOPBACK) for _ in range(3)]
    over = clients.open(port, LOOPBACK)
    wait_for(lambda: is_closed(over), what="the fourth pending connection from 127.0.0.1 closed")
    assert [finish_health(s) for s in mine] == [200, 200, 200]
    # the pending ones from the capped address were kept, and were served when they spoke
    assert [finish_health(s) for s in pending] == [200, 200, 200]
    # ... and now they are done with their heads, the address may connect again
    assert finish_health(clients.open(port, OTHER)) == 200


def test_total_cap_closes_the_extra_connection(router_factory, clients):
    router = router_factory(registration_max_pending=4, header_timeout=30.0)
    port = router.registration_port
    pending = [clients.open(port, source) for source in (LOOPBACK, LOOPBACK, OTHER, OTHER)]
    extra = clients.open(port, THIRD)
    wait_for(lambda: is_closed(extra), what="the fifth pending connection closed")
    assert finish_health(pending[0]) == 200
    # one finished head frees one place
    assert finish_health(clients.open(port, THIRD)) == 200
    assert [finish_health(s) for s in pending[1:]] == [200, 200, 200]


def test_silent_connection_is_closed_and_releases_its_place(router_factory, clients):
    router = router_factory(registration_max_pending_per_address=1, header_timeout=0.5)
    port = router.registration_port
    silent = clients.open(port, OTHER)
    wait_for(lambda: is_closed(silent), what="the silent connection closed by header_timeout")
    wait_for(lambda: finish_health(clients.open(port, OTHER)) == 200,
             what="a new connection from the address once the silent one was closed")


def test_idle_keep_alive_connection_is_closed_after_header_timeout(router_factory, clients):
    router = router_factory(header_timeout=0.5)
    sock = clients.open(router.registration_port)
    assert finish_health(sock) == 200  # HTTP/1.1: the connection stays open for the next one
    wait_for(lambda: is_closed(sock), what="the idle keep-alive connection closed")
