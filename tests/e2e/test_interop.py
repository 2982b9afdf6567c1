"""Our connector against routers that speak only v1: ours configured so, and a legacy one that
echoes no subprotocol (as crank4go and older crank4j routers do)."""
from __future__ import annotations

import socket
from typing import Any

import pytest
from support import (
    LOOPBACK,
    ScriptedRouter,
    deterministic_bytes,
    receive_until_closed,
    wait_for,
)

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
        wait_for(lambda: any("cannot register" in r.getMessage()
                             and "this router speaks cranker_1.0" in r.getMessage()
                             for r in caplog.records if r.name.startswith("crank_sync.connector")),
                 what="the connector logging the refusal, with the router's reason")
        assert router.idle_sockets("svc") == 0
        assert conn.idle_count() == 0
    finally:
        assert conn.stop(timeout=5) is True
        router.stop(timeout=5)


class _LegacyExchange:
    """As a v1-only router that echoes no subprotocol: sends one bodiless GET and records what
    comes back, ending with ``("closed", code)``."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, ws: Any, sock: socket.socket) -> None:
        ws.send("GET /svc/bytes/3000?seed=9 HTTP/1.1\nHost:legacy\n\n_2")
        self.messages, code = receive_until_closed(ws)
        if code is not None:
            self.messages.append(("closed", code))


@pytest.fixture
def legacy_router():
    router = ScriptedRouter(_LegacyExchange(), name="legacy-router")  # echoes no subprotocol
    yield router
    router.stop()


def test_connector_falls_back_to_v1_when_the_router_echoes_no_subprotocol(legacy_router,
                                                                          target):
    conn = Connector(target=target.url, route="svc", protocols=("3.0", "1.0"), sliding_window=1,
                     routers=[legacy_router.url]).start()
    try:
        wait_for(legacy_router.done.is_set, what="the legacy router's exchange")
        assert legacy_router.offered[0].replace(" ", "") == "cranker_3.0,cranker_1.0"
        texts = [m for m in legacy_router.script.messages if isinstance(m, str)]
        body = b"".join(m for m in legacy_router.script.messages if isinstance(m, bytes))
        assert texts and texts[0].startswith("HTTP/1.1 200")
        assert body == deterministic_bytes(3000, 9)
        assert legacy_router.script.messages[-1] == ("closed", 1000)
    finally:
        conn.stop(timeout=5)
