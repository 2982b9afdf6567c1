"""How many sockets a connector keeps at a router: ``v3_sockets`` for v3, ``sliding_window`` for v1.

A connector opens one socket first; once the router has answered with its protocol, it tops up
to ``v3_sockets`` (v3 carries every request on them) or ``sliding_window`` idle v1 sockets. A
lost v3 socket is replaced by its own worker, so the count stays put; a socket beyond the
count (left over when a router switched from v1 to v3) is not replaced when it drops.
"""
from __future__ import annotations

from typing import Any

import pytest
import requests
from support import LOOPBACK, wait_for

from crank_sync import ConnectorConfig

V3_PREFERRED = ("3.0", "1.0")


def _workers(conn: Any) -> list[Any]:
    return [w for link in conn._links for w in link.workers()]


def _registered(router: Any, route: str = "svc") -> list[Any]:
    groups = router._core.registry.snapshot().get(route, {})
    return [*groups.get("idle", []), *groups.get("v3", [])]


def _get(router: Any, path: str) -> requests.Response:
    return requests.get(f"http://{LOOPBACK}:{router.http_port}{path}", timeout=10)


def test_default_is_one_v3_socket_per_router(router, target, connector_factory):
    conn = connector_factory(target, protocols=V3_PREFERRED, v3_sockets=1, wait=False)
    assert conn.config.v3_sockets == ConnectorConfig.v3_sockets == 1
    wait_for(lambda: router.idle_sockets("svc") >= 1, what="the v3 socket")
    # one worker only: the top-up decision is made before the first socket reports itself v3
    wait_for(lambda: [w.state for w in _workers(conn)] == ["v3"], what="one v3 worker")
    assert [s.protocol for s in _registered(router)] == ["cranker_3.0"]
    for i in range(20):  # every request shares the one socket
        assert _get(router, f"/svc/echo?i={i}").status_code == 200
    assert len(_registered(router)) == 1 and len(_workers(conn)) == 1


@pytest.mark.parametrize("count", [2, 3])
def test_v3_sockets_sets_the_count(router, target, connector_factory, count):
    conn = connector_factory(target, protocols=V3_PREFERRED, sliding_window=1, v3_sockets=count,
                             wait=False)
    wait_for(lambda: router.idle_sockets("svc") >= count, what=f"{count} v3 sockets")
    # the router registers a socket as it answers the upgrade, before the connector has read
    # that answer: the topped-up workers report themselves v3 a moment later
    wait_for(lambda: sorted(w.state for w in _workers(conn)) == ["v3"] * count,
             what=f"{count} v3 workers")
    assert len(_registered(router)) == count


def test_a_v1_router_gets_sliding_window_sockets(router_factory, target, connector_factory):
    router = router_factory(protocols=("1.0",))
    conn = connector_factory(target, routers=[router], protocols=V3_PREFERRED, sliding_window=3,
                             v3_sockets=1, wait=False)
    wait_for(lambda: router.idle_sockets("svc") >= 3, what="three idle v1 sockets")
    wait_for(lambda: sorted(w.state for w in _workers(conn)) == ["idle"] * 3,
             what="three idle v1 workers")
    assert _get(router, "/svc/echo").status_code == 200
    # the used socket was replaced: the window is full again
    wait_for(lambda: router.idle_sockets("svc") >= 3, what="the replacement v1 socket")
    assert {s.protocol for s in _registered(router)} == {"cranker_1.0"}


def test_a_lost_v3_socket_is_replaced_by_one(router, target, connector_factory):
    conn = connector_factory(target, protocols=V3_PREFERRED, v3_sockets=1, wait=False)
    wait_for(lambda: router.idle_sockets("svc") >= 1, what="the v3 socket")
    [first] = _registered(router)
    first.ws.close(1001, "test drops the socket")
    wait_for(lambda: [s for s in _registered(router) if s is not first],
             what="a new v3 socket")
    assert len(_registered(router)) == 1
    wait_for(lambda: [w.state for w in _workers(conn)] == ["v3"], what="one v3 worker")
    assert _get(router, "/svc/echo").status_code == 200


def test_a_dropped_socket_beyond_v3_sockets_is_not_replaced(router, target, connector_factory):
    conn = connector_factory(target, protocols=V3_PREFERRED, sliding_window=1, v3_sockets=3,
                             wait=False)
    wait_for(lambda: len(_registered(router)) == 3, what="three v3 sockets")
    # as after a router switched from v1 to v3: more v3 sockets than the connector keeps
    object.__setattr__(conn.config, "v3_sockets", 1)
    for left in (2, 1):
        _registered(router)[0].ws.close(1001, "test drops a socket")
        wait_for(lambda left=left: len(_workers(conn)) == left and len(_registered(router)) == left,
                 what=f"{left} socket(s) left, the dropped one not replaced")
    # the last one is within the count: it comes back
    [last] = _registered(router)
    last.ws.close(1001, "test drops the last socket")
    wait_for(lambda: [s for s in _registered(router) if s is not last], what="a new v3 socket")
    assert len(_workers(conn)) == 1
    assert _get(router, "/svc/echo").status_code == 200


def test_v3_sockets_must_be_positive():
    with pytest.raises(ValueError, match="v3_sockets"):
        ConnectorConfig(target="http://127.0.0.1:1", route="svc",
                        routers=("ws://127.0.0.1:1",), v3_sockets=0)
