"""Route selection: first path segment, catch-all, several connectors, 404 and 503."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import requests
from support import LOOPBACK, both_protocols, client_url, wait_for

import crank_sync


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

    resp = session.get(client_url(router, "/unknown-route/headers/x?y=1"), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["path"] == "/unknown-route/headers/x?y=1"
    assert resp.headers["X-Target-Name"] == "catch-all"

    resp = session.get(client_url(router, "/svc/headers/z"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["X-Target-Name"] == "specific"
    assert [r.path for r in specific.received] == ["/svc/headers/z"]
    assert [r.path for r in catch_all.received] == ["/unknown-route/headers/x?y=1"]


@both_protocols
def test_path_is_not_stripped(router, target, connector_factory, session):
    connector_factory(target, route="svc")
    resp = session.get(client_url(router, "/svc/headers"), timeout=10)
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
        resp = session.get(client_url(router, f"/svc/bytes/10?i={i}"), timeout=10)
        assert resp.status_code == 200
        served_by.append(resp.headers["X-Target-Name"])
    assert len(first.received) + len(second.received) == 40
    assert len(first.received) > 0, f"first target never used: {served_by}"
    assert len(second.received) > 0, f"second target never used: {served_by}"


@both_protocols
def test_unknown_route_without_catch_all_is_404(router, target, connector_factory, session):
    connector_factory(target, route="svc")
    resp = session.get(client_url(router, "/no-such-route/x"), timeout=10)
    assert resp.status_code == 404
    assert target.received == []


def test_no_connector_at_all_is_404(router, session):
    resp = session.get(client_url(router, "/svc/x"), timeout=10)
    assert resp.status_code == 404


@pytest.mark.parametrize("router", [{"connector_max_wait": 1.0}], indirect=True)
def test_503_when_route_has_no_idle_socket(router, fake_connector_factory):
    fake = fake_connector_factory(router, "slowroute")
    first_result: dict[str, object] = {}

    def first_request() -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                first_result["resp"] = s.get(client_url(router, "/slowroute/one"), timeout=30)
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
            second = s.get(client_url(router, "/slowroute/two"), timeout=30)
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
    resp = session.get(client_url(router, f"/{route}/headers/x"), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["path"] == f"/{route}/headers/x"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("router", [{"connector_max_wait": 60.0}], indirect=True)
def test_v1_burst_waits_in_arrival_order_and_none_gets_503(router, target, connector_factory):
    """200 requests at once through two v1 sockets: most wait for a replacement socket. They
    are served in arrival order, so with a generous connector_max_wait none gets 503."""
    connector_factory(target, route="svc", sliding_window=2, protocols=("1.0",))
    statuses: list[int | str] = []
    lock = threading.Lock()
    go = threading.Event()

    def one(i: int) -> None:
        go.wait(30)
        try:
            with requests.Session() as s:
                s.trust_env = False
                status: int | str = s.get(
                    client_url(router, f"/svc/slow?seconds=0.02&n={i}"), timeout=120
                ).status_code
        except requests.RequestException as err:
            status = repr(err)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,), name=f"test-burst-{i}")
               for i in range(200)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(150)
    assert not any(t.is_alive() for t in threads)
    failed = [s for s in statuses if s != 200]
    assert len(statuses) == 200 and not failed, failed[:10]
    # no socket was lost on the way: the window is whole again and no one is left waiting
    wait_for(lambda: router.idle_sockets("svc") >= 2, what="the v1 window restored")
    assert router.registry.waiting == 0


@pytest.mark.parametrize("router", [{"connector_max_wait": 60.0}], indirect=True)
def test_a_waiting_client_that_leaves_gives_up_its_place(router, fake_connector_factory):
    busy = fake_connector_factory(router, "queue")
    holder = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    leaver = socket.create_connection((LOOPBACK, router.http_port), timeout=10)
    third: dict[str, object] = {}

    def third_request() -> None:
        with requests.Session() as s:
            s.trust_env = False
            third["resp"] = s.get(client_url(router, "/queue/three"), timeout=30)

    t = threading.Thread(target=third_request, name="test-third-request")
    try:
        holder.sendall(b"GET /queue/one HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.recv_request()  # the only socket is taken: the next request waits
        leaver.sendall(b"GET /queue/two HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: router.registry.waiting == 1, what="the second request waiting")
        leaver.close()
        # it stops waiting when its client leaves, not when connector_max_wait runs out
        wait_for(lambda: router.registry.waiting == 0, what="the waiter to give up")
        fresh = fake_connector_factory(router, "queue")
        t.start()
        head, _ = fresh.recv_request()  # the new socket serves the next request, not the gone one
        assert head.startswith("GET /queue/three HTTP/1.1\n"), head
        fresh.send_head(200, "OK", (("Content-Length", "2"),))
        fresh.send_body(b"ok")
        fresh.close(1000)
        t.join(30)
        assert not t.is_alive() and third["resp"].status_code == 200  # type: ignore[union-attr]
    finally:
        busy.close(1011)
        holder.close()
        leaver.close()
        if t.is_alive():
            t.join(30)
