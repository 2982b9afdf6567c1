"""ClientSink: the non-blocking try never waits on a client socket, whatever its timeout."""
from __future__ import annotations

import socket
import threading

import pytest

from crank_sync.errors import ClientGone
from crank_sync.router.sink import ClientSink


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(30.0)  # as a client socket has: sendmsg alone would wait up to this long
    b.settimeout(30.0)
    yield a, b
    a.close()
    b.close()


def fill(sink: ClientSink) -> bytes:
    """Try-write until the peer's buffers are full; returns the first leftover."""
    block = b"x" * 65536
    for _ in range(10_000):
        rest = sink.try_write([block])
        if rest:
            return rest
    raise AssertionError("socket buffers never filled")


def test_try_write_returns_what_a_full_socket_did_not_take(pair):
    a, b = pair
    sink = ClientSink(a)
    assert sink.try_write([b"head", b"body"]) == b""
    assert b.recv(100) == b"headbody"
    assert sink.last_activity > 0
    rest = fill(sink)
    assert 0 < len(rest) <= 65536
    # the peer reads: everything written arrives, and the socket takes more again
    again = sink.try_write([b"y"])
    assert again == b"y"  # still full: nothing sent, nothing lost, no wait


def test_try_write_does_not_wait_for_a_thread_that_holds_the_lock(pair):
    a, b = pair
    sink = ClientSink(a)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sink.lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer, name="test-sink-holder")
    thread.start()
    try:
        assert held.wait(30)
        assert sink.busy
        assert sink.try_write([b"ab", b"cd"]) == b"abcd"
    finally:
        release.set()
        thread.join(30)
    assert not sink.busy
    assert sink.try_write([b"ab"]) == b""
    assert b.recv(10) == b"ab"


def test_a_gone_client_is_client_gone_and_write_records_the_error(pair):
    a, b = pair
    b.close()
    sink = ClientSink(a)
    with pytest.raises(ClientGone):
        for _ in range(100):  # the first send may still be accepted before the reset
            sink.try_write([b"z" * 65536])

    def write() -> None:
        a.sendall(b"late")

    with pytest.raises(OSError):
        sink.write(write)
    assert isinstance(sink.error, OSError)
