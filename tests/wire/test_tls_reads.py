"""TLS reads that never run beside another thread's TLS write, on both sides of a socket.

OpenSSL does not allow one connection to be read and written by two threads at once. A v3
socket is read by its reader thread while other threads write to it, and over wss that ended
the socket now and then with a spurious EOF (tests/e2e/test_security_tls.py's bulk test caught
it). The connector's ``FrameReader`` and the router's ``LockedSocket`` now read a TLS socket
under the lock every writer holds, and wait for bytes outside it.

Driven over a real TLS connection on a ``socketpair`` (a trustme certificate). While the test
holds the writers' lock, a read must not complete even though the bytes have arrived; once the
lock is released it must. (The first half can only show a missing lock by failing; on a slow
machine it could pass without one, never fail with one.)
"""
from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
import websocket
from support import ws_frame

from crank_sync.connector.frames import FrameReader
from crank_sync.connector.websocket import ConnectorWebSocket
from crank_sync.errors import ReadTimeout
from crank_sync.router.websocket import LockedSocket

TIMEOUT = 5.0
BINARY = 0x2
#: How long a read held off by the lock is given to (wrongly) complete.
HELD_OFF = 0.3


@pytest.fixture
def tls_pair() -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """(client, server) ends of one TLS connection."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    server_side: list[ssl.SSLSocket] = []

    def accept() -> None:
        server_side.append(server_ctx.wrap_socket(b, server_side=True))

    thread = threading.Thread(target=accept, name="test-tls-accept")
    thread.start()
    client = client_ctx.wrap_socket(a, server_hostname="localhost")
    thread.join(TIMEOUT)
    assert server_side, "TLS handshake did not finish"
    try:
        yield client, server_side[0]
    finally:
        client.close()
        server_side[0].close()


def _wait_readable(sock: socket.socket) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    assert poller.poll(TIMEOUT * 1000), "the bytes never arrived"


def _read_held_off_by(lock: Any, read: Any, send: Any) -> Any:
    """Hold ``lock``, start ``read()`` on a thread, ``send()``; the read must wait for the
    lock. Returns what it read once the lock is released."""
    result: list[Any] = []
    done = threading.Event()

    def reader() -> None:
        result.append(read())
        done.set()

    thread = threading.Thread(target=reader, name="test-tls-reader")
    with lock:
        thread.start()
        send()
        assert not done.wait(HELD_OFF), "a TLS read completed while a writer held the lock"
    assert done.wait(TIMEOUT), "the read did not complete once the lock was free"
    thread.join(TIMEOUT)
    return result[0]


def test_connector_reads_tls_only_between_writes(tls_pair):
    client, server = tls_pair
    ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
    ws.sock = client
    ws.connected = True
    reader = FrameReader(ConnectorWebSocket(ws))
    got = _read_held_off_by(ws.lock, reader.recv,
                            lambda: server.sendall(ws_frame(BINARY, b"x" * 1000)))
    assert got == (BINARY, b"x" * 1000)
    assert client.gettimeout() == TIMEOUT  # the read's non-blocking moment is undone


def test_connector_tls_read_times_out_as_read_timeout(tls_pair):
    client, _server = tls_pair
    client.settimeout(0.2)
    ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
    ws.sock = client
    ws.connected = True
    with pytest.raises(ReadTimeout):
        FrameReader(ConnectorWebSocket(ws)).recv()


def test_router_reads_tls_only_between_writes(tls_pair):
    client, server = tls_pair
    locked = LockedSocket(client)

    def read() -> bytes | None:
        while True:  # None: a record without data yet (TLS 1.3 session tickets come first)
            _wait_readable(client)
            data = locked.recv(65536)
            if data is not None:
                return data

    got = _read_held_off_by(locked.lock, read, lambda: server.sendall(b"hello over tls"))
    assert got == b"hello over tls"
    assert client.gettimeout() == TIMEOUT


def test_router_tls_read_with_nothing_there_returns_none_at_once(tls_pair):
    client, _server = tls_pair
    locked = LockedSocket(client)
    assert locked.recv(65536) is None  # no complete record: not a block, not an EOF
    assert client.gettimeout() == TIMEOUT


def test_router_plain_read_is_unchanged():
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(TIMEOUT)
        b.sendall(b"plain")
        assert LockedSocket(a).recv(100) == b"plain"
