"""The socket registry on its own: routing, waiting, dark mode, deregistration races."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from crank_sync.errors import ClientGone, NoConnectorAvailable, NoRoute
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


class Waiters:
    """Requests waiting in ``acquire`` on their own threads, started one at a time so their
    order of arrival is known; ``results[i]`` is what request ``i`` got (socket or error)."""

    def __init__(self, registry: SocketRegistry) -> None:
        self.registry = registry
        self.results: dict[int, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, timeout: float = 10.0, **kwargs: Any) -> int:
        i = len(self.threads)
        before = self.registry.waiting

        def wait() -> None:
            try:
                self.results[i] = self.registry.acquire("svc", timeout=timeout, **kwargs)
            except Exception as err:
                self.results[i] = err

        thread = threading.Thread(target=wait, name=f"test-waiter-{i}")
        self.threads.append(thread)
        thread.start()
        deadline = time.monotonic() + 10
        while self.registry.waiting <= before and i not in self.results:
            assert time.monotonic() < deadline, "the request did not start waiting"
            time.sleep(0.002)
        return i

    def result(self, i: int) -> Any:
        self.threads[i].join(10)
        assert not self.threads[i].is_alive(), f"request {i} still waiting"
        return self.results[i]


def known_route() -> SocketRegistry:
    """A registry where route ``svc`` is known but has no idle socket."""
    registry = SocketRegistry(grace=30.0)
    registry.add(sock())
    registry.acquire("svc", timeout=0.01)
    return registry


def test_waiters_are_served_in_arrival_order():
    registry = known_route()
    waiters = Waiters(registry)
    for _ in range(20):
        waiters.start()
    added = [sock() for _ in range(20)]
    for s in added:
        registry.add(s)
    assert [waiters.result(i) for i in range(20)] == added
    assert registry.waiting == 0


def test_a_new_request_does_not_overtake_a_waiter():
    registry = known_route()
    waiters = Waiters(registry)
    first = waiters.start()
    fresh = sock()
    registry.add(fresh)
    # the socket was handed to the waiting request as it arrived: a newcomer finds none
    with pytest.raises(NoConnectorAvailable):
        registry.acquire("svc", timeout=0)
    assert waiters.result(first) is fresh


def test_a_waiter_that_timed_out_is_skipped():
    registry = known_route()
    waiters = Waiters(registry)
    early = waiters.start(timeout=0.05)
    assert isinstance(waiters.result(early), NoConnectorAvailable)
    later = waiters.start()
    fresh = sock()
    registry.add(fresh)
    assert waiters.result(later) is fresh
    assert registry.idle_count("svc") == 0


def test_a_waiter_whose_client_left_gives_up_and_the_next_is_served():
    registry = known_route()
    waiters = Waiters(registry)
    left = threading.Event()
    leaving = waiters.start(gone=left.is_set, check_every=0.01)
    staying = waiters.start()
    left.set()
    assert isinstance(waiters.result(leaving), ClientGone)
    fresh = sock()
    registry.add(fresh)
    assert waiters.result(staying) is fresh


def test_a_socket_handed_over_as_the_client_leaves_goes_to_the_next_waiter():
    registry = known_route()
    waiters = Waiters(registry)
    fresh = sock()
    arrived = threading.Event()

    def gone() -> bool:
        # the socket arrives (and is handed to this oldest waiter) just as its client leaves
        if arrived.wait(10):
            registry.add(fresh)
        return True

    leaving = waiters.start(gone=gone, check_every=0.01)
    staying = waiters.start()
    arrived.set()
    assert isinstance(waiters.result(leaving), ClientGone)
    assert waiters.result(staying) is fresh
    assert registry.idle_count("svc") == 0


def test_a_socket_given_back_with_no_one_waiting_is_idle_again():
    registry = known_route()
    waiters = Waiters(registry)
    fresh = sock()

    def gone() -> bool:
        registry.add(fresh)
        return True

    leaving = waiters.start(gone=gone, check_every=0.01)
    assert isinstance(waiters.result(leaving), ClientGone)
    assert registry.idle_count("svc") == 1
    assert registry.acquire("svc", timeout=0) is fresh


def test_closing_the_registry_ends_every_wait():
    registry = known_route()
    waiters = Waiters(registry)
    started = [waiters.start() for _ in range(3)]
    registry.close()
    assert all(isinstance(waiters.result(i), NoRoute) for i in started)
