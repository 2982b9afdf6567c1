"""Connector listeners: every request callback, in order, with its arguments, over v1 and v3 and
against an HTTP target and an in-process WSGI app; header changes seen by the target and the
client; Reject before the target; a listener that raises; the registration headers a router
checks; and the registration changes REGISTERED, REFUSED and LOST. Real router, real
connector, real target, all on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import LOOPBACK, closed_port, deterministic_bytes, registration_url, wait_for

from crank_sync import (
    ClientGone,
    Connector,
    ConnectorListener,
    ListenerFailed,
    RegistrationState,
    Reject,
    TargetError,
)

V1 = ("1.0",)
V3 = ("3.0", "1.0")
over_protocols = pytest.mark.parametrize("protocols", [V1, V3], ids=["v1", "v3"])
over_targets = pytest.mark.parametrize("kind", ["http", "wsgi"])
TOKEN = "tok-hooks-5a7c9e"


class Recorder(ConnectorListener):
    """Records every callback with what it was given (copied: the objects live on)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple] = []
        self.states: list[tuple[str, RegistrationState, str]] = []
        self.completed: list[Any] = []

    def _add(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def names(self) -> list[str]:
        with self.lock:
            return [c[0] for c in self.calls]

    def on_before_request(self, info, headers):
        self._add("before", threading.current_thread().name, info.router, info.route,
                  info.protocol, info.method, info.target, info.request_id, info.status,
                  headers.items())

    def on_response(self, info, status, headers):
        self._add("response", threading.current_thread().name, status, headers.items(),
                  info.status)

    def on_complete(self, info):
        self._add("complete", threading.current_thread().name, info.status, info.bytes_in,
                  info.bytes_out, info.error, info.request_id, info.protocol, info.router)
        with self.lock:
            self.completed.append(info)

    def on_registration_changed(self, router, state, reason=""):
        with self.lock:
            self.states.append((router, state, reason))

    def state_names(self) -> list[RegistrationState]:
        with self.lock:
            return [s for _, s, _ in self.states]


# --------------------------------------------------------------------------- the WSGI target


class App:
    """``/svc/echo``: the body back; ``/svc/headers``: the request headers as JSON."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    def __call__(self, environ, start_response):
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        self.seen.append((environ["PATH_INFO"], headers))
        body = environ["wsgi.input"].read()
        if environ["PATH_INFO"].startswith("/svc/headers"):
            body = json.dumps({"headers": [[n, v] for n, v in headers.items()]}).encode()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body))), ("X-Echo-Method", "yes")])
        return [body]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def start(router_factory, target) -> Iterator[Callable[..., Connector]]:
    """``start(router, protocols, kind, listeners, **options)``: a started connector on route
    ``svc`` for the HTTP target (``kind="http"``) or an ``App`` (``kind="wsgi"``)."""
    started: list[Connector] = []

    def make(router: Any, protocols: tuple[str, ...], kind: str = "http",
             listeners: list[Any] = (), wait: bool = True, **options: Any) -> Connector:
        app = App()
        conn = Connector(target=target.url if kind == "http" else app, route="svc",
                         routers=[registration_url(router)], protocols=protocols,
                         sliding_window=2, v3_sockets=1, listeners=list(listeners), **options)
        conn.app = app  # type: ignore[attr-defined]
        started.append(conn)
        conn.start()
        if wait:
            wait_for(lambda: router.idle_sockets("svc") >= 1 and conn.idle_count() >= 1,
                     what="the connector registered")
        return conn

    yield make
    results = [conn.stop(timeout=10) for conn in reversed(started)]
    assert all(results), f"connector stop() did not finish in time: {results}"


def request(router: Any, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        try:
            data = resp.read()
        except http.client.IncompleteRead as err:  # a body cut short: what did arrive
            data = err.partial
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def completed(rec: Recorder, count: int) -> list[Any]:
    return wait_for(lambda: len(rec.completed) >= count and list(rec.completed),
                    what=f"{count} on_complete call(s)")


def target_saw(conn: Connector, target: Any, kind: str, path: str) -> list[dict[str, str]]:
    """The headers of each request the target (HTTP or WSGI) got for ``path``."""
    if kind == "http":
        return [dict(r.headers) for r in target.received_for(path)]
    return [h for p, h in conn.app.seen if p.startswith(path)]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- request callbacks


@over_protocols
@over_targets
def test_every_callback_in_order_with_bodies_both_ways(router, start, protocols, kind):
    rec = Recorder()
    start(router, protocols, kind, [rec])
    body = deterministic_bytes(200_000, 7)
    status, headers, echoed = request(router, "POST", "/svc/echo?x=1", body,
                                      {"X-Mine": "a", "X-Request-Id": "rid-order-1"})
    assert status == 200 and echoed == body
    completed(rec, 1)
    assert rec.names() == ["before", "response", "complete"]
    before, response, complete = rec.calls
    version = "3.0" if protocols == V3 else "1.0"
    url = registration_url(router)
    assert before[2:9] == (url, "svc", version, "POST", "/svc/echo?x=1", "rid-order-1", None)
    assert ("X-Mine", "a") in before[9]
    assert response[2] == 200 and response[4] == 200
    assert ("X-Echo-Method", "POST" if kind == "http" else "yes") in response[3]
    assert complete[2:9] == (200, len(body), len(body), None, "rid-order-1", version, url)
    # on the thread serving the request: the v1 socket's, or a v3 stream's
    thread = "crank-connector-socket" if version == "1.0" else "crank-connector-stream"
    assert {c[1] for c in rec.calls} == {before[1]} and before[1].startswith(thread)


@over_protocols
@over_targets
def test_header_changes_reach_the_target_and_the_client(router, start, target, protocols,
                                                        kind):
    class Rewrite(ConnectorListener):
        def on_before_request(self, info, headers):
            headers["X-Added"] = "by-listener"
            headers.pop("X-Secret")

        def on_response(self, info, status, headers):
            headers.add("X-From-Listener", "yes")
            headers.pop("X-Echo-Method")

    conn = start(router, protocols, kind, [Rewrite()])
    status, headers, body = request(router, "GET", "/svc/headers/x",
                                    headers={"X-Secret": "s3cret", "X-Kept": "k"})
    assert status == 200
    seen = {n.lower(): v for n, v in json.loads(body)["headers"]}
    assert seen["x-added"] == "by-listener" and seen["x-kept"] == "k"
    assert "x-secret" not in seen
    (saw,) = target_saw(conn, target, kind, "/svc/headers")
    assert "X-Secret" not in saw and saw.get("X-Added") == "by-listener"
    assert headers["X-From-Listener"] == "yes"
    assert "X-Echo-Method" not in headers
    status, headers, _ = request(router, "POST", "/svc/echo", b"abc")
    assert status == 200 and "X-Echo-Method" not in headers


class KeyCheck(Recorder):
    """Rejects a request without ``X-Key`` (401, a body, a header of its own)."""

    def on_before_request(self, info, headers):
        super().on_before_request(info, headers)
        if headers.get("X-Key") != "k":
            raise Reject(401, "no key\n", {"WWW-Authenticate": "Key", "Content-Length": "999"})


@over_protocols
@over_targets
def test_reject_answers_before_the_target(router, start, target, protocols, kind):
    rec = KeyCheck()
    conn = start(router, protocols, kind, [rec])
    body = deterministic_bytes(300_000, 3)  # read to its end and dropped by the connector
    for method, payload in (("POST", body), ("GET", None), ("POST", b"small")):
        status, headers, answer = request(router, method, "/svc/echo", payload,
                                          {"X-Request-Id": f"rid-{method}"})
        assert (status, answer) == (401, b"no key\n")
        assert headers["WWW-Authenticate"] == "Key"
        assert headers["Content-Length"] == "7"  # ours, not the listener's
        assert headers["Content-Type"].startswith("text/plain")
    assert target_saw(conn, target, kind, "/svc/echo") == []
    done = completed(rec, 3)
    assert [(i.status, i.error, i.bytes_in, i.bytes_out) for i in done] == [
        (401, None, len(body), 7), (401, None, 0, 7), (401, None, 5, 7)]
    assert "response" not in rec.names()  # a Reject's answer is not the target's
    # the same connector goes on: the socket (v1: its replacement) or stream is usable
    for _ in range(3):
        status, _, echoed = request(router, "POST", "/svc/echo", body, {"X-Key": "k"})
        assert status == 200 and echoed == body
    assert len(target_saw(conn, target, kind, "/svc/echo")) == 3


@over_protocols
@pytest.mark.parametrize("where", ["on_before_request", "on_response"])
def test_a_raising_listener_fails_its_request_only(router, start, target, protocols, where,
                                                   caplog):
    rec = Recorder()

    class Buggy(ConnectorListener):
        pass

    def boom(self, info, *args):
        if "boom" in info.target:
            raise RuntimeError("listener bug")

    setattr(Buggy, where, boom)
    conn = start(router, protocols, "http", [Buggy(), rec])
    status, _, answer = request(router, "POST", "/svc/echo/boom", b"payload",
                                {"X-Request-Id": "rid-boom-7"})
    assert status == 502
    assert b"rid-boom-7" in answer
    failed = wait_for(lambda: [r for r in caplog.records
                               if r.name.startswith("crank_sync.connector") and r.exc_info
                               and "rid-boom-7" in r.getMessage()],
                      what="the listener's traceback logged")
    assert failed[0].exc_info[0] is RuntimeError and where in failed[0].getMessage()
    (info,) = completed(rec, 1)
    assert info.status == 502 and isinstance(info.error, ListenerFailed)
    assert isinstance(info.error.__cause__, RuntimeError)
    # the target saw the request only when the failure came after it
    assert len(target_saw(conn, target, "http", "/svc/echo/boom")) == (where == "on_response")
    status, _, echoed = request(router, "POST", "/svc/echo", b"next")
    assert (status, echoed) == (200, b"next")


@over_protocols
def test_on_complete_failing_is_logged_only(router, start, protocols, caplog):
    class Buggy(ConnectorListener):
        def on_complete(self, info):
            raise RuntimeError("complete bug")

    rec = Recorder()
    start(router, protocols, "http", [Buggy(), rec])
    for _ in range(2):
        status, _, echoed = request(router, "POST", "/svc/echo", b"fine")
        assert (status, echoed) == (200, b"fine")
    assert len(completed(rec, 2)) == 2  # the next listener is called all the same
    wait_for(lambda: [r for r in caplog.records if r.name.startswith("crank_sync.connector")
                      and r.exc_info and "on_complete" in r.getMessage()],
             what="the on_complete failure logged")


@over_protocols
def test_on_complete_reports_target_failures(router, start, protocols):
    rec = Recorder()
    start(router, protocols, "http", [rec])
    status, _, _ = request(router, "GET", "/svc/die-mid-body")
    assert status == 200  # the head went out; the body was cut short
    (info,) = completed(rec, 1)
    assert info.status == 200 and info.error is not None and 0 < info.bytes_out


@over_protocols
def test_on_complete_reports_a_client_gone_mid_body(router, start, target, protocols):
    rec = Recorder()
    start(router, protocols, "http", [rec])
    with socket.create_connection((LOOPBACK, router.http_port), timeout=10) as client:
        client.sendall(b"GET /svc/endless HTTP/1.1\r\nHost: x\r\nX-Request-Id: rid-gone\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
    assert target.endless_aborted.wait(10)
    (info,) = completed(rec, 1)
    assert info.status == 200 and info.request_id == "rid-gone"
    assert isinstance(info.error, ClientGone) and info.bytes_out > 0


@over_protocols
def test_on_complete_reports_an_unreachable_target(router_factory, start, protocols):
    router = router_factory()
    rec = Recorder()
    conn = Connector(target=f"http://{LOOPBACK}:{closed_port()}", route="svc",
                     routers=[registration_url(router)], protocols=protocols,
                     listeners=[rec]).start()
    try:
        wait_for(lambda: router.idle_sockets("svc") >= 1, what="registration")
        status, _, _ = request(router, "GET", "/svc/x", headers={"X-Request-Id": "rid-down"})
        assert status == 502
        (info,) = completed(rec, 1)
        assert info.status is None and isinstance(info.error, TargetError)
        assert info.request_id == "rid-down"
        assert rec.names() == ["before", "complete"]
    finally:
        assert conn.stop(timeout=10)


# --------------------------------------------------------------------------- registration


class TokenSource(Recorder):
    """Gives each registration a token (``token``, changeable) and counts the calls."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.asked: list[str] = []

    def registration_headers(self, router):
        with self.lock:
            self.asked.append(router)
        return {"Authorization": f"Bearer {self.token}"}


@over_protocols
def test_registration_headers_reach_the_router(router_factory, start, protocols):
    router = router_factory(registration_tokens=(TOKEN,))
    source = TokenSource(TOKEN)
    conn = start(router, protocols, "http", [source])  # no token of its own
    assert conn.config.token is None
    url = registration_url(router)
    asked = len(source.asked)
    assert asked >= 1 and set(source.asked) == {url}
    status, _, _ = request(router, "POST", "/svc/echo", b"x")
    assert status == 200
    if protocols == V1:  # the used socket's replacement registers with a fresh call
        wait_for(lambda: len(source.asked) > asked, what="another registration_headers call")
    wait_for(lambda: source.state_names() == [RegistrationState.REGISTERED], what="REGISTERED")
    assert source.states[0][0] == url


@over_protocols
def test_refused_then_registered(router_factory, start, protocols, caplog):
    router = router_factory(registration_tokens=(TOKEN,))
    source = TokenSource("tok-wrong")
    start(router, protocols, "http", [source], wait=False)
    wait_for(lambda: len([r for r in caplog.records if "cannot register" in r.getMessage()])
             >= 2, what="two refused attempts")
    assert source.state_names() == [RegistrationState.REFUSED]  # once, not per attempt
    router_url, _, reason = source.states[0]
    assert router_url == registration_url(router) and "403" in reason
    assert router.idle_sockets("svc") == 0
    source.token = TOKEN  # the next attempt's header is fresh
    wait_for(lambda: router.idle_sockets("svc") >= 1, what="registration with the good token")
    wait_for(lambda: source.state_names() == [RegistrationState.REFUSED,
                                              RegistrationState.REGISTERED],
             what="REGISTERED after REFUSED")


@over_protocols
def test_lost_when_the_router_stops_and_registered_again(router_factory, start, protocols):
    first = router_factory()
    port = first.registration_port
    rec = Recorder()
    start(first, protocols, "http", [rec])
    wait_for(lambda: rec.state_names() == [RegistrationState.REGISTERED], what="REGISTERED")
    router_factory.stop(first)
    wait_for(lambda: rec.state_names() == [RegistrationState.REGISTERED,
                                           RegistrationState.LOST], what="LOST")
    second = router_factory(registration_port=port)
    wait_for(lambda: second.idle_sockets("svc") >= 1, what="registration at the new router")
    wait_for(lambda: rec.state_names() == [RegistrationState.REGISTERED, RegistrationState.LOST,
                                           RegistrationState.REGISTERED],
             what="REGISTERED again")
    assert {r for r, _, _ in rec.states} == {f"ws://{LOOPBACK}:{port}"}
    status, _, echoed = request(second, "POST", "/svc/echo", b"back")
    assert (status, echoed) == (200, b"back")
