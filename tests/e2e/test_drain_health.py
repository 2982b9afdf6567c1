"""A router behind a load balancer: the client-port health path answers 503 as soon as the
router starts to stop, while requests are still served for ``drain_grace`` seconds."""
from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from support import LOOPBACK, wait_for


def get(router: Any, path: str) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"http://{LOOPBACK}:{router.http_port}{path}", timeout=15)


def test_the_health_path_answers_on_the_client_port(router_factory: Any) -> None:
    router = router_factory(health_path="/crank-health")
    resp = get(router, "/crank-health?from=lb")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    assert resp.headers["Cache-Control"] == "no-store"
    with requests.Session() as s:
        s.trust_env = False
        head = s.head(f"http://{LOOPBACK}:{router.http_port}/crank-health", timeout=15)
    assert head.status_code == 200 and head.content == b""
    assert get(router, "/crank-healthz").status_code == 404  # only the path itself


def test_health_turns_503_before_the_router_stops_serving(router_factory: Any,
                                                          connector_factory: Any,
                                                          target: Any) -> None:
    router = router_factory(health_path="/crank-health", drain_grace=10.0)
    connector_factory(target, routers=[router])
    assert get(router, "/crank-health").status_code == 200
    stopped: dict[str, Any] = {}
    stopper = threading.Thread(target=lambda: stopped.update(ok=router_factory.stop(router)),
                               name="test-router-stop")
    stopper.start()
    try:
        # (a list: a 503 Response is falsy, and wait_for waits for something truthy)
        resp, = wait_for(lambda: [r for r in [get(router, "/crank-health")]
                                  if r.status_code == 503], what="the health check failing")
        assert resp.json() == {"status": "draining"}
        assert resp.headers["Connection"] == "close"
        # the grace: the load balancer has not noticed yet, and requests are still served
        served = get(router, "/svc/bytes/1000")
        assert served.status_code == 200 and len(served.content) == 1000
    finally:
        stopper.join(60)
    assert stopped["ok"] is True
    with pytest.raises(requests.ConnectionError):
        get(router, "/crank-health")


@pytest.mark.parametrize("path", ["crank-health", "/with space", "/\x07"])
def test_a_bad_health_path_is_named(path: str) -> None:
    from crank_sync import RouterConfig

    with pytest.raises(ValueError, match="^health_path must be a path"):
        RouterConfig(health_path=path)


def test_an_unknown_route_is_503_during_the_startup_grace(router_factory: Any) -> None:
    warming = router_factory(startup_grace=600.0)
    resp = get(warming, "/nobody-yet/x")
    assert resp.status_code == 503
    assert "connectors may not have registered yet" in resp.text
    assert get(router_factory(), "/nobody-yet/x").status_code == 404


def test_health_says_starting_until_a_connector_registered(router_factory: Any,
                                                          connector_factory: Any,
                                                          target: Any) -> None:
    router = router_factory(health_path="/crank-health", startup_grace=600.0)
    resp = get(router, "/crank-health")
    assert (resp.status_code, resp.json()) == (503, {"status": "starting"})
    connector_factory(target, routers=[router])
    assert get(router, "/crank-health").json() == {"status": "ok"}
