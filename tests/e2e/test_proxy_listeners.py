"""Router proxy listeners: every callback, in order, with its arguments, over v1 and v3; header
and status changes seen by the target and the client; Reject before and after the target; a
listener that raises. Real router, real connector, real target, all on 127.0.0.1."""

from __future__ import annotations

import http.client
import logging
import threading

import pytest
from support import LOOPBACK, both_protocols, client_url, deterministic_bytes, wait_for

from crank_sync import Headers, ProxyInfo, ProxyListener, Reject


class Recorder(ProxyListener):
    """Records every callback with what it was given (copied: the objects live on)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()
        self.completed = threading.Event()
        self.request_chunks: list[bytes] = []
        self.response_chunks: list[bytes] = []

    def _add(self, *call) -> None:
        with self.lock:
            self.calls.append(call)

    def names(self) -> list[str]:
        with self.lock:
            names = [c[0] for c in self.calls]
        # body chunks come in any number: one entry for each run of them
        out: list[str] = []
        for name in names:
            if not out or out[-1] != name or not name.endswith("_chunk"):
                out.append(name)
        return out

    def on_before_proxy_to_target(self, info, headers):
        self._add("before_proxy", info.route, info.method, info.target, headers.items(),
                  info.client_address, info.request_id, info.protocol, info.status)

    def on_failure_to_acquire_socket(self, info):
        self._add("failure_to_acquire", info.route)

    def on_after_target_headers_received(self, info, status, headers):
        self._add("after_target_headers", status, headers.items(), info.protocol,
                  info.connector_instance_id, info.service_address)
        return None

    def on_before_responding_to_client(self, info):
        self._add("before_responding", info.status, info.response_headers.items())

    def on_request_body_chunk(self, info, chunk):
        self.request_chunks.append(bytes(chunk))
        self._add("request_chunk", len(chunk))

    def on_response_body_chunk(self, info, chunk):
        self.response_chunks.append(bytes(chunk))
        self._add("response_chunk", len(chunk))

    def on_complete(self, info):
        self._add("complete", info.status, info.bytes_in, info.bytes_out, info.error,
                  info.duration >= 0, info.socket_wait >= 0, info.route)
        self.completed.set()


def _post(router, path: str, body: bytes, headers: dict | None = None):
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@both_protocols
def test_every_callback_in_order_with_bodies_both_ways(router_factory, target,
                                                       connector_factory):
    rec = Recorder()
    router = router_factory(listeners=[rec])
    connector_factory(target, routers=[router], route="svc")
    body = deterministic_bytes(200_000, 3)
    status, headers, echoed = _post(router, "/svc/echo?x=1", body, {"X-Mine": "a"})
    assert status == 200 and echoed == body
    assert rec.completed.wait(10)
    assert rec.names() == ["before_proxy", "request_chunk", "after_target_headers",
                           "before_responding", "response_chunk", "complete"]
    before = rec.calls[0]
    assert before[1:4] == ("svc", "POST", "/svc/echo?x=1")
    assert ("X-Mine", "a") in before[4]
    assert before[5] == LOOPBACK
    assert before[6] == headers["X-Request-Id"]
    assert before[7] == "-" and before[8] is None  # no connector chosen, no status yet
    after = next(c for c in rec.calls if c[0] == "after_target_headers")
    assert after[1] == 200
    assert after[3] in ("cranker_1.0", "cranker_3.0")
    assert after[4] != "-"
    assert after[5][0] == LOOPBACK and after[5][1] > 0
    assert b"".join(rec.request_chunks) == body
    assert b"".join(rec.response_chunks) == body
    complete = rec.calls[-1]
    assert complete[1] == 200 and complete[2] == len(body)
    assert complete[3] == len(body)
    assert complete[4] is None and complete[5] and complete[6] and complete[7] == "svc"


@both_protocols
def test_header_changes_reach_the_target_and_the_client(router_factory, target,
                                                        connector_factory, session):
    class Rewrite(ProxyListener):
        def on_before_proxy_to_target(self, info, headers):
            headers["X-Added"] = "by-listener"
            del headers["X-Secret"]

        def on_after_target_headers_received(self, info, status, headers):
            headers.add("X-From-Listener", "yes")
            return 203

        def on_before_responding_to_client(self, info):
            assert info.status == 203
            info.response_headers["X-Last"] = "word"

    router = router_factory(listeners=[Rewrite()])
    connector_factory(target, routers=[router], route="svc")
    resp = session.get(client_url(router, "/svc/headers/x"), headers={"X-Secret": "s3"}, timeout=10)
    assert resp.status_code == 203
    assert resp.reason == "Non-Authoritative Information"
    assert resp.headers["X-From-Listener"] == "yes"
    assert resp.headers["X-Last"] == "word"
    seen = {n.lower(): v for n, v in resp.json()["headers"]}
    assert seen["x-added"] == "by-listener"
    assert "x-secret" not in seen


@both_protocols
def test_reject_before_the_target_never_reaches_a_connector(router_factory, target,
                                                            connector_factory, session):
    class Auth(ProxyListener):
        def on_before_proxy_to_target(self, info, headers):
            if headers.get("Authorization") != "Bearer good":
                raise Reject(401, "no entry\n", {"WWW-Authenticate": "Bearer"})

    rec = Recorder()
    router = router_factory(listeners=[Auth(), rec])
    connector_factory(target, routers=[router], route="svc")
    resp = session.post(client_url(router, "/svc/echo"), data=b"x" * 5000, timeout=10)
    assert resp.status_code == 401
    assert resp.text == "no entry\n"
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers["X-Request-Id"]
    assert target.received_for("/svc/echo") == []
    # the recorder after the rejecting listener saw no before_proxy, but saw the end
    assert rec.completed.wait(10)
    assert rec.names() == ["complete"]
    assert rec.calls[-1][1] == 401
    ok = session.get(client_url(router, "/svc/bytes/10"), headers={"Authorization": "Bearer good"},
                     timeout=10)
    assert ok.status_code == 200 and len(ok.content) == 10


@both_protocols
def test_reject_after_the_target_drops_its_response(router_factory, target,
                                                    connector_factory, session):
    class NoTeapots(ProxyListener):
        def on_after_target_headers_received(self, info, status, headers):
            if status == 418:
                raise Reject(502, b"refused by policy\n")

    router = router_factory(listeners=[NoTeapots()])
    connector_factory(target, routers=[router], route="svc")
    resp = session.get(client_url(router, "/svc/status/418"), timeout=10)
    assert resp.status_code == 502
    assert resp.content == b"refused by policy\n"
    # the connector and the route go on
    for _ in range(3):
        ok = session.get(client_url(router, "/svc/bytes/100"), timeout=10)
        assert ok.status_code == 200 and len(ok.content) == 100


@both_protocols
def test_a_raising_listener_fails_that_request_only(router_factory, target, connector_factory,
                                                    session, caplog):
    class Buggy(ProxyListener):
        def on_before_proxy_to_target(self, info, headers):
            if info.target.endswith("boom"):
                raise RuntimeError("listener bug")

    rec = Recorder()
    router = router_factory(listeners=[Buggy(), rec])
    connector_factory(target, routers=[router], route="svc")
    with caplog.at_level(logging.ERROR, logger="crank_sync.router.listening"):
        resp = session.get(client_url(router, "/svc/bytes/1?boom"), timeout=10)
    assert resp.status_code == 500
    request_id = resp.headers["X-Request-Id"]
    assert request_id in resp.text
    assert target.received_for("/svc/bytes/1?boom") == []
    failed = [r for r in caplog.records if "Buggy" in r.getMessage()]
    assert failed and failed[0].exc_info is not None and request_id in failed[0].getMessage()
    assert rec.completed.wait(10)
    assert type(rec.calls[-1][4]).__name__ == "ListenerFailed"
    ok = session.get(client_url(router, "/svc/bytes/7"), timeout=10)
    assert ok.status_code == 200 and len(ok.content) == 7


@both_protocols
def test_a_raising_on_complete_is_logged_and_the_router_goes_on(router_factory, target,
                                                                connector_factory, session,
                                                                caplog):
    class Broken(ProxyListener):
        def on_complete(self, info):
            raise ValueError("complete bug")

    rec = Recorder()
    router = router_factory(listeners=[Broken(), rec])
    connector_factory(target, routers=[router], route="svc")
    with caplog.at_level(logging.ERROR, logger="crank_sync.router.listening"):
        for n in range(3):
            resp = session.get(client_url(router, f"/svc/bytes/{n + 1}"), timeout=10)
            assert resp.status_code == 200 and len(resp.content) == n + 1
    # the other listener's on_complete still ran for each request
    wait_for(lambda: sum(1 for c in rec.calls if c[0] == "complete") == 3, 10,
             "three on_complete calls")
    assert sum(1 for r in caplog.records if "on_complete" in r.getMessage()) == 3


def test_no_connector_calls_failure_to_acquire_and_complete_once(router_factory, session):
    rec = Recorder()
    router = router_factory(listeners=[rec], connector_max_wait=0.2)
    resp = session.get(client_url(router, "/nobody/here"), timeout=10)
    assert resp.status_code in (404, 503)
    assert rec.completed.wait(10)
    assert rec.names() == ["before_proxy", "failure_to_acquire", "complete"]
    complete = rec.calls[-1]
    assert complete[1] == resp.status_code
    assert type(complete[4]).__name__ in ("NoRoute", "NoConnectorAvailable")


@both_protocols
def test_target_gone_mid_response_completes_with_the_error(router_factory, target,
                                                           connector_factory):
    rec = Recorder()
    router = router_factory(listeners=[rec])
    connector_factory(target, routers=[router], route="svc")
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        conn.request("GET", "/svc/die-mid-body")
        resp = conn.getresponse()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        conn.close()
    assert rec.completed.wait(10)
    complete = rec.calls[-1]
    assert complete[4] is not None  # aborted: the error is there


def test_listeners_that_override_nothing_are_accepted_and_free(router_factory, target,
                                                               connector_factory, session):
    router = router_factory(listeners=[ProxyListener(), ProxyListener()])
    connector_factory(target, routers=[router], route="svc")
    resp = session.get(client_url(router, "/svc/bytes/5"), timeout=10)
    assert resp.status_code == 200


def test_something_that_is_not_a_listener_is_refused(router_factory):
    with pytest.raises(TypeError, match="not a proxy listener"):
        router_factory(listeners=[object()])


def test_headers_api():
    h = Headers([("A", "1"), ("b", "2"), ("a", "3")])
    assert h.get("a") == "1" and h.get_all("A") == ["1", "3"] and "B" in h
    h["a"] = "9"
    assert h.items() == [("b", "2"), ("a", "9")]
    h.add("C", "x")
    del h["B"]
    assert h.items() == [("a", "9"), ("C", "x")] and len(h) == 2
    with pytest.raises(KeyError):
        del h["nope"]
    with pytest.raises(ValueError):
        h["X"] = "evil\r\nInjected: 1"
    with pytest.raises(ValueError):
        Reject(99)
    assert isinstance(ProxyInfo, type)
