"""The connector's target pool: surplus connections past its size are closed quietly."""
from __future__ import annotations

import logging

import pytest
from support import deterministic_bytes, standing_still, wait_for

from crank_sync.connector.target import Cancel, TargetClient, iter_response, send_request
from crank_sync.errors import TargetError
from crank_sync.protocol import RequestHead


def test_connections_past_the_pool_size_are_closed_without_a_warning(target, caplog):
    client = TargetClient(target.url, connect_timeout=5, read_timeout=5, maxsize=1)
    caplog.set_level(logging.DEBUG)
    try:
        head = RequestHead(method="GET", target="/svc/bytes/100?seed=1",
                           headers=(("Host", "127.0.0.1"),))
        # three at once: the pool keeps one connection, the other two are surplus
        responses = [client.send(head, None) for _ in range(3)]
        for resp in responses:
            assert resp.status == 200
            assert resp.read() == deterministic_bytes(100, 1)
            resp.release_conn()
        assert client.connections_made == 3
        assert client.idle_count() == 1
        # the kept connection serves the next request
        again = client.send(head, None)
        assert again.read() == deterministic_bytes(100, 1)
        again.release_conn()
        assert client.connections_made == 3
    finally:
        client.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, [r.getMessage() for r in warnings]
    assert sum("closing a surplus connection" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize("method, added", [("GET", []), ("DELETE", []),
                                            ("POST", [("content-length", "0")])])
def test_no_user_agent_or_accept_encoding_is_added_and_connections_are_reused(target, method,
                                                                            added):
    """Only a bodyless POST, PUT or PATCH gains ``Content-Length: 0`` (urllib3's request does
    it, as RFC 9110 asks a sender, and the Java connector sends it too)."""
    client = TargetClient(target.url, connect_timeout=5, read_timeout=5, maxsize=2)
    try:
        head = RequestHead(method=method, target="/svc/bytes/10?seed=2",
                           headers=(("Host", "127.0.0.1"),))
        for _ in range(2):
            resp = client.send(head, None)
            assert resp.status == 200
            assert resp.read() == deterministic_bytes(10, 2)
            resp.release_conn()
        assert client.connections_made == 1
    finally:
        client.close()
    seen = target.received_for("/svc/bytes/10")
    assert len(seen) == 2
    for rec in seen:
        assert sorted((n.lower(), v) for n, v in rec.headers) == sorted(
            [("host", "127.0.0.1"), *added]), rec.headers


def test_target_errors_carry_the_reason_the_connector_sends():
    import socket

    from crank_sync.errors import TargetError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connect is refused
        client = TargetClient(f"http://127.0.0.1:{port}", connect_timeout=5, read_timeout=5)
        head = RequestHead(method="GET", target="/x", headers=(("Host", "a"),))
        try:
            client.send(head, None)
        except TargetError as err:
            assert err.reason == "connection refused"
            assert err.__cause__ is not None  # the foreign error, kept as the cause
        else:
            raise AssertionError("a refused connect must raise TargetError")
        finally:
            client.close()


def test_a_body_read_to_its_length_frees_the_connection(target):
    """A v3 stream stops reading at length_remaining == 0, without the final empty read."""
    client = TargetClient(target.url, connect_timeout=5, read_timeout=5, maxsize=2)
    try:
        head = RequestHead(method="GET", target="/svc/bytes/10?seed=3",
                           headers=(("Host", "127.0.0.1"),))
        for _ in range(3):
            resp = client.send(head, None)
            data = b""
            while resp.length_remaining:
                data += resp.read1(65536)
            assert data == deterministic_bytes(10, 3)
            resp.release_conn()
        assert client.connections_made == 1
    finally:
        client.close()


class _OwnTarget:
    """A Target of the application's own whose socket fails (the Target protocol)."""

    def __init__(self, fail_on_send: bool) -> None:
        self.fail_on_send = fail_on_send
        self.status, self.reason, self.headers = 200, "OK", {}

    def send(self, head, body, cancel=None):
        if self.fail_on_send:
            raise ConnectionRefusedError(111, "Connection refused")
        return self

    def read1(self, amt=None, decode_content=None):
        raise ConnectionResetError(104, "Connection reset by peer")

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def test_an_os_error_of_an_own_target_becomes_a_target_error():
    head = RequestHead(method="GET", target="/", headers=())
    with pytest.raises(TargetError) as info:
        send_request(_OwnTarget(fail_on_send=True), head, None, Cancel())
    assert info.value.reason == "connection refused"
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    resp = send_request(_OwnTarget(fail_on_send=False), head, None, Cancel())
    with pytest.raises(TargetError) as info:
        next(iter_response(resp, 1024))
    assert info.value.reason == "connection reset"
    assert isinstance(info.value.__cause__, ConnectionResetError)


def drain(resp) -> None:
    """Read ``resp`` until its end or its error."""
    try:
        while resp.read1(65536):
            pass
    except TargetError:
        pass


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled", "closed"])
def test_an_abandoned_response_resets_the_target_connection(target, cancelled):
    """A response given up mid-body (cancelled from another thread, or closed by its reader)
    resets the connection: the target's blocked write fails at once, rather than waiting on a
    zero window until the kernel's FIN timeout."""
    client = TargetClient(target.url, connect_timeout=5, read_timeout=5)
    try:
        target.endless_aborted.clear()
        cancel = Cancel()
        head = RequestHead(method="GET", target="/svc/endless", headers=(("Host", "a"),))
        resp = client.send(head, None, cancel)
        assert resp.read1(65536)
        wait_for(standing_still(lambda: target.endless_sent, 0.5), timeout=20,
                 what="the target's writes blocked on a full window")
        if cancelled:  # as the watcher does: the worker reads on, drains what is queued
            cancel.cancel()
            drain(resp)
        resp.close()
        resp.release_conn()
        assert target.endless_aborted.wait(10), "the target's write did not fail"
        assert client.idle_count() == 0
    finally:
        client.close()
