"""Concurrency caps end to end: ``max_in_flight`` requests of a route at once, a bounded
queue behind them that a freed slot admits in order, 503 with Retry-After when the queue is
full or ``queue_timeout`` passed. The target holds each request until the test lets that one
go, so every step waits on an event, never on the clock."""

from __future__ import annotations

import http.client
import http.server
import threading
from typing import Any

import pytest
from support import LOOPBACK, admin_url, both_protocols, wait_for

pytestmark = both_protocols
WAIT = 30.0


class GatedTarget:
    """``GET /<route>/hold/<name>`` arrives (``arrived[name]`` is set) and is answered only
    once the test calls :meth:`let_go` for that name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: dict[str, threading.Event] = {}
        self.gates: dict[str, threading.Event] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                outer.arrival(name).set()
                outer.gate(name).wait(WAIT)
                body = f"done {name}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, name="test-gated-target")
        self.thread.start()

    def arrival(self, name: str) -> threading.Event:
        with self.lock:
            return self.arrived.setdefault(name, threading.Event())

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def has_seen(self, name: str) -> bool:
        return self.arrival(name).is_set()

    def let_go(self, name: str) -> None:
        self.gate(name).set()

    def stop(self) -> None:
        with self.lock:
            gates = list(self.gates.values())
        for gate in gates:
            gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


class Call:
    """One GET on a named thread; ``status``, ``headers`` and ``body`` once it is answered."""

    def __init__(self, router: Any, path: str) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(router, path),
                                       name=f"test-call-{path.rsplit('/', 1)[-1]}")
        self.thread.start()

    def _run(self, router: Any, path: str) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=WAIT)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            self.body = resp.read()
            self.status, self.headers = resp.status, dict(resp.getheaders())
        finally:
            conn.close()
            self.done.set()

    def result(self) -> int | None:
        assert self.done.wait(WAIT), "no answer"
        self.thread.join(WAIT)
        return self.status


@pytest.fixture
def gated():
    target = GatedTarget()
    yield target
    target.stop()


def limits(session: Any, router: Any) -> dict[str, Any]:
    return session.get(admin_url(router, "/api/stats"), timeout=10).json()["limits"]


@pytest.mark.parametrize("router", [{"routes": {"svc": {"max_in_flight": 2, "max_queue": 1,
                                                        "queue_timeout": WAIT}}}],
                         indirect=True)
def test_the_queue_admits_when_a_slot_frees_and_a_full_queue_is_503(router, gated,
                                                                     connector_factory, session):
    connector_factory(gated.url, route="svc", sliding_window=4)
    connector_factory(gated.url, route="free")
    calls = {}
    try:
        for name in ("a", "b"):
            calls[name] = Call(router, f"/svc/hold/{name}")
            wait_for(lambda name=name: gated.has_seen(name), what=f"{name} at the target")
        calls["c"] = Call(router, "/svc/hold/c")
        wait_for(lambda: limits(session, router).get("svc") == {"in_flight": 2, "queued": 1},
                 what="c queued behind a and b")
        # the queue is full: refused at once, and the target never sees it
        full = Call(router, "/svc/hold/d")
        assert full.result() == 503
        assert int(full.headers["Retry-After"]) >= 1
        assert b"busy" in full.body
        assert not gated.has_seen("d")
        # another route is not held up
        calls["free"] = Call(router, "/free/hold/free")
        wait_for(lambda: gated.has_seen("free"), what="the uncapped route at the target")
        gated.let_go("free")
        assert calls["free"].result() == 200
        # a slot frees: the queued request goes on
        assert not gated.has_seen("c")
        gated.let_go("a")
        assert calls["a"].result() == 200
        wait_for(lambda: gated.has_seen("c"), what="c admitted once a finished")
        for name in ("b", "c"):
            gated.let_go(name)
            assert calls[name].result() == 200
        assert calls["c"].body == b"done c\n"
        wait_for(lambda: limits(session, router) == {}, what="no slot held")
    finally:
        for name in ("a", "b", "c", "d", "free"):
            gated.let_go(name)
        for call in calls.values():
            call.result()
    stats = session.get(admin_url(router, "/api/stats"), timeout=10).json()
    assert stats["rejected"] == {"svc": {"concurrency": 1}}
    metrics = session.get(admin_url(router, "/metrics"), timeout=10).text
    assert 'crank_requests_rejected_total{reason="concurrency",route="svc"} 1.0' in metrics


@pytest.mark.parametrize("router", [{"max_in_flight": 1, "max_queue": 1, "queue_timeout": 0.2}],
                         indirect=True)
def test_a_queued_request_that_waits_too_long_is_503(router, gated, connector_factory, session):
    connector_factory(gated.url, route="svc")
    holder = Call(router, "/svc/hold/holder")
    try:
        wait_for(lambda: gated.has_seen("holder"), what="the holder at the target")
        late = Call(router, "/svc/hold/late")
        assert late.result() == 503  # the holder is still held: only the timeout ended it
        assert late.headers["Retry-After"] == "1"
        assert b"waited too long" in late.body
        assert not gated.has_seen("late")
    finally:
        gated.let_go("holder")
    assert holder.result() == 200
    metrics = session.get(admin_url(router, "/metrics"), timeout=10).text
    assert 'crank_requests_rejected_total{reason="queue_timeout",route="svc"} 1.0' in metrics
    # the slot came back: the next request goes straight through
    after = Call(router, "/svc/hold/after")
    gated.let_go("after")
    assert after.result() == 200


@pytest.mark.parametrize("router", [{"max_in_flight": 1}], indirect=True)
def test_a_slot_comes_back_after_a_failed_request(router, target, connector_factory, session):
    """A request that ends in an error (a 500 from the target, a route with no connector)
    gives its slot back like any other."""
    connector_factory(target, route="svc")
    for _ in range(5):
        assert session.get(f"http://{LOOPBACK}:{router.http_port}/svc/status/500",
                           timeout=10).status_code == 500
        assert session.get(f"http://{LOOPBACK}:{router.http_port}/nobody/x",
                           timeout=10).status_code in (404, 503)
    assert limits(session, router) == {}
