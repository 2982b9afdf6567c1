"""Route selection: first path segment, catch-all, several connectors, 404 and 503."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from crank_test_support import LOOPBACK, both_protocols, wait_for

import crank_sync


def url(router, path: str) -> str:
    return f"http://{LOOPBACK}:{router.http_port}{path}"


@pytest.mark.parametrize("empty", ["", "  "])
def test_connector_refuses_an_empty_route(target, empty):
    """An empty route used to become the catch-all silently: the catch-all is asked for as '*'."""
    with pytest.raises(ValueError, match=r"route: must not be empty.*'\*' for the catch-all"):
        crank_sync.ConnectorConfig(target=target.url, route=empty, routers=("ws://127.0.0.1:1",))


@pytest.mark.parametrize("catch_all_route", ["*"])
@both_protocols
def test_catch_all_receives_unknown_route(
    router, target_factory, connector_factory, session, catch_all_route
):
    specific = target_factory("specific")
    catch_all = target_factory("catch-all")
    connector_factory(specific, route="svc")
    connector_factory(catch_all, route=catch_all_route)

    resp = session.get(url(router, "/unknown-route/headers/x?y=1"), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["path"] == "/unknown-route/headers/x?y=1"
    assert resp.headers["X-Target-Name"] == "catch-all"

    resp = session.get(url(router, "/svc/headers/z"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["X-Target-Name"] == "specific"
    assert [r.path for r in specific.received] == ["/svc/headers/z"]
    assert [r.path for r in catch_all.received] == ["/unknown-route/headers/x?y=1"]


@both_protocols
def test_path_is_not_stripped(router, target, connector_factory, session):
    connector_factory(target, route="svc")
    resp = session.get(url(router, "/svc/headers"), timeout=10)
    assert resp.status_code == 200
    assert json.loads(resp.content)["path"] == "/svc/headers"


@both_protocols
def test_two_connectors_on_one_route_both_serve(router, target_factory, connector_factory, session):
    first = target_factory("first")
    second = target_factory("second")
    connector_factory(first, route="svc", connector_instance_id="inst-first")
    connector_factory(second, route="svc", connector_instance_id="inst-second")
    wait_for(lambda: router.idle_sockets("svc") >= 4, what="4 idle sockets on svc")

    served_by = []
    for i in range(40):
        resp = session.get(url(router, f"/svc/bytes/10?i={i}"), timeout=10)
        assert resp.status_code == 200
        served_by.append(resp.headers["X-Target-Name"])
    assert len(first.received) + len(second.received) == 40
    assert len(first.received) > 0, f"first target never used: {served_by}"
    assert len(second.received) > 0, f"second target never used: {served_by}"


@both_protocols
def test_unknown_route_without_catch_all_is_404(router, target, connector_factory, session):
    connector_factory(target, route="svc")
    resp = session.get(url(router, "/no-such-route/x"), timeout=10)
    assert resp.status_code == 404
    assert target.received == []


def test_no_connector_at_all_is_404(router, session):
    resp = session.get(url(router, "/svc/x"), timeout=10)
    assert resp.status_code == 404


@pytest.mark.parametrize("router", [{"connector_max_wait": 1.0}], indirect=True)
def test_503_when_route_has_no_idle_socket(router, fake_connector_factory):
    fake = fake_connector_factory(router, "slowroute")
    first_result: dict[str, object] = {}

    def first_request() -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                first_result["resp"] = s.get(url(router, "/slowroute/one"), timeout=30)
        except Exception as err:
            first_result["error"] = err

    t = threading.Thread(target=first_request, name="test-first-request")
    t.start()
    try:
        head, _ = fake.recv_request()
        assert head.startswith("GET /slowroute/one HTTP/1.1\n")
        wait_for(lambda: router.idle_sockets("slowroute") == 0, what="socket taken from the pool")
        with requests.Session() as s:
            s.trust_env = False
            second = s.get(url(router, "/slowroute/two"), timeout=30)
        assert second.status_code == 503
    finally:
        fake.close(1011)  # release the first request
        t.join(30)
    assert not t.is_alive()
    assert "resp" in first_result, first_result
    assert first_result["resp"].status_code == 502


@both_protocols
@pytest.mark.parametrize("route", ["my.service_v2", "a-b", "UPPER"])
def test_route_names_with_dots_dashes_underscores_and_case(
    router, target, connector_factory, session, route
):
    connector_factory(target, route=route)
    resp = session.get(url(router, f"/{route}/headers/x"), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["path"] == f"/{route}/headers/x"
