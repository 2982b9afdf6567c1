"""Routes as mu-cranker-router keeps them: a route whose connectors have all gone answers 503
for ``route_keep_time``, then disappears by itself; a route that never existed is 404 at once.
Route names are checked where they are registered, and the longest-prefix resolver is opt-in.
"""
from __future__ import annotations

import pytest
import requests
import websocket
from support import LOOPBACK, single_protocols, wait_for

from crank_sync import Connector, ConnectorConfig


def _status(router, path: str) -> int:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"http://{LOOPBACK}:{router.http_port}{path}", timeout=30).status_code


def _admin(router, path: str):
    return requests.get(f"http://{LOOPBACK}:{router.registration_port}{path}", timeout=10).json()


@single_protocols
@pytest.mark.parametrize("router", [{"connector_max_wait": 0.5, "route_keep_time": 600.0}],
                         indirect=True)
def test_a_route_whose_connectors_left_answers_503_not_404(router, target, connector_factory):
    conn = connector_factory(target, route="svc")
    assert _status(router, "/svc/bytes/1") == 200
    connector_factory.stop(conn)
    wait_for(lambda: router.idle_sockets("svc") == 0, what="the connector's sockets gone")
    assert _status(router, "/svc/bytes/1") == 503
    assert _status(router, "/never-registered/x") == 404
    assert "svc" in _admin(router, "/health/connectors")["services"]
    assert _admin(router, "/api/timeseries")["states"]["svc"]["state"] == "down"


@single_protocols
@pytest.mark.parametrize("router", [{"connector_max_wait": 0.5, "route_keep_time": 1.0}],
                         indirect=True)
def test_after_the_keep_time_the_route_disappears_by_itself(router, target, connector_factory):
    conn = connector_factory(target, route="svc")
    connector_factory.stop(conn)
    wait_for(lambda: router.idle_sockets("svc") == 0, what="the connector's sockets gone")
    # no request for the route: the admin endpoints alone show it going
    wait_for(lambda: "svc" not in _admin(router, "/health/connectors")["services"],
             what="svc gone from /health/connectors")
    assert "svc" not in _admin(router, "/api/registrations")
    wait_for(lambda: "svc" not in _admin(router, "/api/timeseries")["states"],
             what="svc gone from the dashboard's route states")
    assert _status(router, "/svc/bytes/1") == 404


def _register(router, route: str) -> websocket.WebSocket:
    return websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/register/?connectorInstanceID=r"
        "&componentName=r", header=[f"Route: {route}", "CrankerProtocol: 1.0"], timeout=10)


@pytest.mark.parametrize("route", ["..", ".", "hello.", "hello/.", "hello./world", "a//b",
                                   "a b"])
def test_invalid_route_names_are_refused_at_registration(router, route):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _register(router, route)
    assert info.value.status_code == 400
    assert router.registry.snapshot() == {}


def test_a_route_the_default_resolver_cannot_reach_is_refused_with_a_close_reason(router):
    ws = _register(router, "a/b")
    try:
        ws.settimeout(10)
        opcode, frame = ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1008
        assert b"cannot be reached" in frame.data
    finally:
        ws.shutdown()
    assert router.idle_sockets("a/b") == 0


@pytest.mark.parametrize("router", [{"route_resolver": "longest-prefix"}], indirect=True)
@single_protocols
def test_longest_prefix_resolver_picks_the_longest_registered_route(router, target_factory,
                                                                    connector_factory):
    short, long = target_factory("short"), target_factory("long")
    connector_factory(short, route="a")
    connector_factory(long, route="a/b")
    # every target answers these paths with its own 404: which target saw them is the test
    for path in ("/a/b/c/x", "/a/bc/x", "/a/x"):
        _status(router, path)
    assert [r.path for r in long.received] == ["/a/b/c/x"]
    assert [r.path for r in short.received] == ["/a/bc/x", "/a/x"]


@pytest.mark.parametrize("route", ["", "  ", "..", "hello."])
def test_a_connector_refuses_an_empty_or_invalid_route(route):
    with pytest.raises(ValueError):
        ConnectorConfig(target="http://127.0.0.1:1", route=route, routers=("ws://127.0.0.1:1",))
    with pytest.raises(ValueError):
        Connector(target="http://127.0.0.1:1", route=route, routers=["ws://127.0.0.1:1"])


def test_connectors_with_a_domain_are_listed_under_their_route(router, target,
                                                               connector_factory):
    connector_factory(target, route="svc", protocols=("3.0",), domain="shop.example",
                      sliding_window=1, wait=False)
    services = wait_for(lambda: _admin(router, "/health/connectors")["services"],
                        what="the domain connector listed")
    assert list(services) == ["svc"], services
    assert services["svc"]["componentName"] == "component-svc"
    (entry,) = services["svc"]["connectors"]
    assert entry["componentName"] == "component-svc"
