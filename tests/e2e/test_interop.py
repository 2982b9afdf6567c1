"""Our connector against routers that speak only v1: ours configured so, and a legacy one that
echoes no subprotocol (as crank4go and older crank4j routers do)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import simple_websocket
from crank_test_support import LOOPBACK, deterministic_bytes, wait_for

from crank_sync import Connector, Router, RouterConfig


def test_v3_preferring_connector_gets_v1_from_a_v1_only_router(target, connector_factory):
    router = Router(RouterConfig(http_port=0, registration_port=0, protocols=("1.0",))).start()
    try:
        conn = connector_factory(target, route="svc", routers=[router], protocols=("3.0", "1.0"))
        groups = router.registry.snapshot()["svc"]
        assert groups["v3"] == []
        assert {s.protocol for s in groups["idle"]} == {"cranker_1.0"}
        import http.client

        client = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=10)
        client.request("GET", "/svc/bytes/5000?seed=3")
        resp = client.getresponse()
        assert resp.status == 200 and resp.read() == deterministic_bytes(5000, 3)
        client.close()
        assert connector_factory.stop(conn, timeout=10) is True
    finally:
        router.stop(timeout=5)


def test_v3_only_connector_is_refused_by_a_v1_only_router(target, caplog):
    caplog.set_level("WARNING", logger="crank_sync")
    router = Router(RouterConfig(http_port=0, registration_port=0, protocols=("1.0",))).start()
    conn = Connector(target=target.url, route="svc", protocols=("3.0",),
                     routers=[f"ws://{LOOPBACK}:{router.registration_port}"]).start()
    try:
        wait_for(lambda: any("is supported" in r.getMessage() for r in caplog.records
                             if r.name == "crank_sync.router.registration"),
                 what="the router refusing the v3-only registration")
        wait_for(lambda: any("cannot register" in r.getMessage() for r in caplog.records
                             if r.name == "crank_sync.connector.worker"),
                 what="the connector logging the refusal as a warning")
        assert router.idle_sockets("svc") == 0
        assert conn.idle_count() == 0
    finally:
        assert conn.stop(timeout=5) is True
        router.stop(timeout=5)


class _LegacyRouter:
    """Accepts one registration without echoing any subprotocol, answers with
    ``CrankerProtocol: 1.0`` like a v1-only router, sends one v1 request and records what the
    connector answers."""

    def __init__(self) -> None:
        self.offered: list[str] = []
        self.messages: list[Any] = []
        self.done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                outer.offered.append(self.headers.get("Sec-WebSocket-Protocol", ""))
                if outer.done.is_set() or len(outer.offered) > 1:
                    self.send_error(503)  # later sockets of the window: not needed
                    return
                environ = {"werkzeug.socket": self.connection}
                for name, value in self.headers.items():
                    environ["HTTP_" + name.upper().replace("-", "_")] = value
                ws = simple_websocket.Server.accept(environ)  # no subprotocols: echoes none
                try:
                    ws.send("GET /svc/bytes/3000?seed=9 HTTP/1.1\nHost:legacy\n\n_2")
                    while True:
                        msg = ws.receive(timeout=10)
                        if msg is None:
                            break
                        outer.messages.append(msg)
                except simple_websocket.ConnectionClosed as closed:
                    outer.messages.append(("closed", closed.reason))
                finally:
                    outer.done.set()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="legacy-router")
        self.thread.start()
        self.port = self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def legacy_router():
    router = _LegacyRouter()
    yield router
    router.stop()


def test_connector_falls_back_to_v1_when_the_router_echoes_no_subprotocol(legacy_router,
                                                                          target):
    conn = Connector(target=target.url, route="svc", protocols=("3.0", "1.0"), sliding_window=1,
                     routers=[f"ws://{LOOPBACK}:{legacy_router.port}"]).start()
    try:
        wait_for(legacy_router.done.is_set, what="the legacy router's exchange")
        assert legacy_router.offered[0].replace(" ", "") == "cranker_3.0,cranker_1.0"
        texts = [m for m in legacy_router.messages if isinstance(m, str)]
        body = b"".join(m for m in legacy_router.messages if isinstance(m, bytes))
        assert texts and texts[0].startswith("HTTP/1.1 200")
        assert body == deterministic_bytes(3000, 9)
        assert legacy_router.messages[-1] == ("closed", 1000)
    finally:
        conn.stop(timeout=5)
