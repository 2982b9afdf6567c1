"""The socket registry on its own: routing, waiting, dark mode, deregistration races."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from crank_sync.errors import NoConnectorAvailable, NoRoute
from crank_sync.router.pool import ConnectorSocket, SocketRegistry


@dataclass
class StubWs:
    connected: bool = True
    finished: bool = False
    in_use: bool = False


def sock(route: str = "svc", instance: str = "a", ip: str = "10.0.0.1") -> ConnectorSocket:
    ws: Any = StubWs()
    return ConnectorSocket(ws=ws, route=route, connector_instance_id=instance,
                           component_name="c", remote_ip=ip, protocol="cranker_1.0")


def test_a_socket_whose_handshake_began_before_its_deregistration_is_refused():
    registry = SocketRegistry(grace=1.0)
    began = time.monotonic()
    registry.take_idle_of("a")  # the deregistration overtakes the registration
    assert registry.add(sock(instance="a"), began) is False
    assert registry.idle_count("svc") == 0


def test_a_registration_after_the_deregistration_is_accepted():
    registry = SocketRegistry(grace=1.0)
    registry.take_idle_of("a")
    assert registry.add(sock(instance="a"), time.monotonic()) is True
    assert registry.add(sock(instance="b"), 0.0) is True  # other instances are unaffected
    assert registry.idle_count("svc") == 2


def test_unknown_route_without_catch_all_is_no_route():
    registry = SocketRegistry(grace=1.0)
    registry.add(sock(route="svc"))
    with pytest.raises(NoRoute):
        registry.acquire("other", timeout=0.01)


def test_catch_all_serves_unknown_routes():
    registry = SocketRegistry(grace=1.0)
    registry.add(sock(route="*"))
    assert registry.acquire("other", timeout=0.01).route == "*"


def test_dark_ip_sockets_stay_registered_but_get_nothing():
    registry = SocketRegistry(grace=1.0)
    registry.add(sock(ip="10.0.0.9"))
    registry.set_dark("10.0.0.9", True)
    with pytest.raises(NoConnectorAvailable):
        registry.acquire("svc", timeout=0.01)
    assert registry.idle_count("svc") == 1
    registry.set_dark("10.0.0.9", False)
    assert registry.acquire("svc", timeout=0.01).remote_ip == "10.0.0.9"


def test_each_new_socket_serves_exactly_one_waiter():
    registry = SocketRegistry(grace=1.0)
    registry.add(sock())
    registry.acquire("svc", timeout=0.01)  # the route is now known but has no idle socket
    results: list[Any] = []

    def wait() -> None:
        try:
            results.append(registry.acquire("svc", timeout=10))
        except NoConnectorAvailable as err:
            results.append(err)

    waiters = [threading.Thread(target=wait, name=f"test-waiter-{i}") for i in range(3)]
    for t in waiters:
        t.start()
    deadline = time.monotonic() + 10
    while registry.waiting < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    for _ in range(3):
        registry.add(sock())
    for t in waiters:
        t.join(10)
    assert len(results) == 3
    assert all(isinstance(r, ConnectorSocket) for r in results)
    assert len({id(r) for r in results}) == 3
