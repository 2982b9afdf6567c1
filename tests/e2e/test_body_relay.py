"""Response bodies written by the connector socket's reader thread.

On a v1 socket the reader writes the whole body to the client itself once the client's thread
hands it over; on a v3 socket it writes each DATA frame the client's socket takes at once.
What was queued before arrives first and in order; a body that overruns its Content-Length,
or a client that stops reading, is handled without harm to anyone else, including the other
streams of a v3 socket.
"""
from __future__ import annotations

import array
import fcntl
import hashlib
import http.client
import socket
import termios
import time
from collections.abc import Callable

import pytest
import requests
from support import LOOPBACK, deterministic_bytes, wait_for


def _serves(router) -> None:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{router.http_port}/svc/bytes/1000?seed=5", timeout=10)
    assert resp.status_code == 200
    assert resp.content == deterministic_bytes(1000, 5)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rest_digest(resp: http.client.HTTPResponse, first: bytes) -> str:
    """The SHA-256 of ``first`` and the rest of the response body, read 1 MiB at a time."""
    digest = hashlib.sha256(first)
    while chunk := resp.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


#: Larger than the loopback socket buffers between the router and a client that reads nothing.
_BIG = 24 * 1024 * 1024


def _big_download(router, target, connector_factory, protocol: str,
                  seed: int) -> tuple[socket.socket, http.client.HTTPResponse, bytes]:
    """Start a download of ``_BIG`` bytes; returns the socket, the response and 64 KiB. With
    v3, one socket carries every request, so others share the stalled client's socket."""
    v1 = protocol == "1.0"
    connector_factory(target, route="svc", sliding_window=2 if v1 else 1, protocols=(protocol,),
                      v3_sockets=1)
    sock = _request(router, f"/svc/bytes/{_BIG}?seed={seed}")
    try:
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        return sock, resp, resp.read(64 * 1024)
    except BaseException:
        sock.close()
        raise


def _queued(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s kernel receive queue."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return buf[0]


def _stalled_for(sock: socket.socket, seconds: float) -> Callable[[], bool]:
    """A condition: ``sock`` has bytes queued and the queue has not changed for ``seconds``."""
    last = {"size": -1, "since": time.monotonic()}

    def stalled() -> bool:
        size, now = _queued(sock), time.monotonic()
        if size != last["size"]:
            last["size"], last["since"] = size, now
            return False
        return size > 0 and now - last["since"] >= seconds

    return stalled


def _request(router, path: str) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def test_a_burst_of_body_messages_arrives_whole_and_in_order(router, fake_connector_factory):
    fake = fake_connector_factory(router, "burst")
    pieces = [deterministic_bytes(100 + i, i) for i in range(60)]
    body = b"".join(pieces)
    sock = _request(router, "/burst/x")
    try:
        fake.recv_request()
        # all of it at once: much is queued before the client's thread hands the body over
        fake.send_head(200, "OK", (("Content-Length", str(len(body))),))
        for i, piece in enumerate(pieces):
            fake.send_body(piece)
            if i == 30:
                fake.send_text("stray text after the head is ignored")
        fake.close(1000)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read() == body
    finally:
        sock.close()


def test_a_body_over_its_content_length_ends_the_exchange(router, target, connector_factory,
                                                         fake_connector_factory):
    connector_factory(target, route="svc")
    fake = fake_connector_factory(router, "overrun")
    sock = _request(router, "/overrun/x")
    try:
        fake.recv_request()
        fake.send_head(200, "OK", (("Content-Length", "10"),))
        fake.send_body(b"0123456789")
        fake.send_body(b"and more than promised")
        assert fake.wait_for_close_code() == 1001
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read() == b"0123456789"
        # the client connection is dropped rather than kept alive after a broken response
        sock.settimeout(10)
        assert sock.recv(1) == b""
    finally:
        sock.close()
        fake.abort()
    _serves(router)


@pytest.mark.parametrize("protocol", ["1.0", "3.0"])
def test_a_client_that_stops_reading_holds_back_no_one_else(router, target, connector_factory,
                                                            protocol):
    sock, resp, first = _big_download(router, target, connector_factory, protocol, seed=9)
    try:
        # the slow client's connection is now full; other requests go on (with v3, on the
        # same connector socket)
        if protocol == "1.0":
            wait_for(lambda: router.idle_sockets("svc") >= 2, what="window restored")
        for _ in range(3):
            _serves(router)
        assert _rest_digest(resp, first) == _digest(deterministic_bytes(_BIG, 9))
    finally:
        sock.close()


@pytest.mark.parametrize("protocol", ["1.0", "3.0"])
@pytest.mark.parametrize("router", [{"idle_timeout": 1.0}], indirect=True)
def test_a_stalled_client_is_not_taken_for_an_idle_connector(router, target, connector_factory,
                                                             protocol):
    sock, resp, first = _big_download(router, target, connector_factory, protocol, seed=3)
    try:
        # the router's write to this client stays blocked (nothing more reaches the client's
        # receive queue) for twice idle_timeout, while the connector has data ready
        wait_for(_stalled_for(sock, 2 * 1.0), timeout=30,
                 what="the client's receive queue unchanged for twice idle_timeout")
        assert _rest_digest(resp, first) == _digest(deterministic_bytes(_BIG, 3))
    finally:
        sock.close()


@pytest.mark.parametrize("protocol", ["1.0", "3.0"])
def test_a_stopped_reader_of_a_200_mb_download_stalls_no_other_request(
        router_factory, target, connector_factory, protocol):
    """One client stops reading a 200 MB download; with v3 the other requests share its
    connector socket, and its reader thread must never wait on that client."""
    router = router_factory(client_timeout=120.0)  # longer than any wait below
    connector_factory(target, route="svc", routers=[router],
                      sliding_window=2 if protocol == "1.0" else 1, protocols=(protocol,),
                      v3_sockets=1)
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /svc/bytes/{200 * 1024 * 1024}?seed=1 HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n\r\n".encode())
        wait_for(_stalled_for(sock, 1.0), timeout=60,
                 what="the stopped client's receive queue full and unchanged for 1 s")
        for _ in range(5):
            _serves(router)
    finally:
        sock.close()
