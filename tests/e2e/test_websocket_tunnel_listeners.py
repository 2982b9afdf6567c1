"""Connector listeners around websockets through the tunnel: ``on_before_request`` sees the
upgrade (and may change its headers or refuse it), ``on_complete`` ends it with 101 once the
websocket is over, or with the refusal's status; ``on_response`` and the body-chunk callbacks
are not called (past the 101 the bytes are the websocket's). Real router, real connector, a
simple-websocket service, websocket-client as the browser, over v1 and v3."""
from __future__ import annotations

import threading
from typing import Any

import pytest
import websocket
from support import LOOPBACK, V1, closed_port, wait_for
from support.ws_service import WebSocketService

from crank_sync import ConnectorListener, Reject

PROTOCOLS = [pytest.param(V1, id="v1"), pytest.param(("3.0",), id="v3")]


class Recorder(ConnectorListener):
    """Adds ``X-Listener: seen`` to each request; refuses ``/svc/private...`` with 403."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[Any, ...]] = []

    def _add(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def names(self) -> list[str]:
        with self.lock:
            return [c[0] for c in self.calls]

    def completed(self) -> list[tuple[Any, ...]]:
        with self.lock:
            return [c for c in self.calls if c[0] == "complete"]

    def on_before_request(self, info, headers):
        self._add("before", info.method, info.target, info.protocol,
                  headers.get("upgrade"))
        if info.target.startswith("/svc/private"):
            raise Reject(403, b"private: no websocket\n", {"X-Why": "listener"})
        headers.add("X-Listener", "seen")

    def on_response(self, info, status, headers):
        self._add("response", status)

    def on_request_body_chunk(self, info, chunk):
        self._add("request-chunk", len(chunk))

    def on_response_body_chunk(self, info, chunk):
        self._add("response-chunk", len(chunk))

    def on_complete(self, info):
        self._add("complete", info.status, type(info.error).__name__ if info.error else None)


@pytest.fixture(params=PROTOCOLS)
def recorded(request: pytest.FixtureRequest, router: Any, connector_factory: Any,
             service: WebSocketService) -> Recorder:
    recorder = Recorder()
    connector_factory(service.url, protocols=request.param, sliding_window=2,
                      listeners=(recorder,))
    return recorder


def connect(router: Any, path: str) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://{LOOPBACK}:{router.http_port}{path}", timeout=15)


def test_a_websocket_goes_through_the_listeners(router, recorded, service):
    ws = connect(router, "/svc/echo")
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\x00" * 100_000)
        assert ws.recv() == b"\x00" * 100_000
        assert recorded.names() == ["before"]  # nothing more while it is open
    finally:
        ws.close()
    wait_for(lambda: recorded.completed(), what="on_complete once the websocket is over")
    assert recorded.names() == ["before", "complete"]
    before, complete = recorded.calls
    assert before[1:3] == ("GET", "/svc/echo")
    assert before[4].lower() == "websocket"
    assert complete == ("complete", 101, None)
    (seen,) = service.seen.handshakes
    assert seen.headers["x-listener"] == "seen"  # the header the listener added


def test_a_listener_refuses_a_websocket(router, recorded, service):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(router, "/svc/private/echo")
    assert info.value.status_code == 403
    assert info.value.resp_body == b"private: no websocket\n"
    assert info.value.resp_headers["x-why"] == "listener"
    wait_for(lambda: recorded.completed(), what="on_complete for the refused upgrade")
    assert recorded.completed() == [("complete", 403, None)]
    assert service.seen.handshakes == []  # the service never saw it
    # the socket or stream is left usable: the next websocket works
    ws = connect(router, "/svc/echo")
    try:
        ws.send("again")
        assert ws.recv() == "again"
    finally:
        ws.close()


def test_the_service_s_refusal_completes_with_its_status(router, recorded):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(router, "/svc/forbidden")
    assert info.value.status_code == 403
    wait_for(lambda: recorded.completed(), what="on_complete for the service's refusal")
    assert recorded.names() == ["before", "complete"]
    assert recorded.completed() == [("complete", 403, None)]


@pytest.mark.parametrize("protocols", [p.values[0] for p in PROTOCOLS], ids=["v1", "v3"])
def test_a_service_that_cannot_be_reached_completes_with_the_error(router, connector_factory,
                                                                   protocols):
    recorder = Recorder()
    connector_factory(f"http://{LOOPBACK}:{closed_port()}", protocols=protocols,
                      sliding_window=2, listeners=(recorder,))
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        connect(router, "/svc/echo")
    assert info.value.status_code == 502
    wait_for(lambda: recorder.completed(), what="on_complete for the failed upgrade")
    assert recorder.names() == ["before", "complete"]
    assert recorder.completed() == [("complete", None, "TargetError")]
