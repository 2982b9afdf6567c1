"""Shared fixtures for the crank_sync test suite.

The end-to-end tests run a real router, real connectors and a real stdlib HTTP service, all on
127.0.0.1 with port 0. Everything a fixture starts is stopped in its teardown, even when the test
fails, and an autouse check fails any test that leaves a ``crank-*`` thread running.

Synchronisation is always "poll a condition with a deadline" (:func:`support.wait_for`), never a
bare ``sleep()``. This file holds only fixtures, hooks and the hypothesis profiles; the helpers
they use live in the ``support`` package beside it (``from support import ...``, see
tests/README.rst).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from hypothesis import settings
from support import (
    V1,
    ConnectorFactory,
    FakeConnector,
    RouterFactory,
    TargetService,
    route_key,
    wait_for,
)

DEFAULT_TIMEOUT_SECONDS = 60

# Property tests (hypothesis) run a bounded, fixed budget: under CI (``CI`` set) the examples
# are derived from the test itself, so every run checks the same inputs and none writes an
# example database into the checkout.
settings.register_profile("crank", max_examples=200, deadline=None)
settings.register_profile("crank-ci", max_examples=200, deadline=None, derandomize=True,
                          database=None, print_blob=True)
settings.load_profile("crank-ci" if os.environ.get("CI") else "crank")


# --------------------------------------------------------------------------- target service


@pytest.fixture
def target_factory() -> Iterator[Callable[..., TargetService]]:
    started: list[TargetService] = []
    counter = iter(range(1, 1000))

    def make(name: str | None = None) -> TargetService:
        svc = TargetService(name or f"target{next(counter)}")
        started.append(svc)
        return svc

    yield make
    for svc in reversed(started):
        svc.stop()


@pytest.fixture
def target(target_factory: Callable[..., TargetService]) -> TargetService:
    return target_factory("target")


# --------------------------------------------------------------------------- router


@pytest.fixture
def router_factory() -> Iterator[RouterFactory]:
    factory = RouterFactory()
    yield factory
    factory.stop_all()


@pytest.fixture
def router(request: pytest.FixtureRequest, router_factory: RouterFactory) -> Any:
    """A started router. Parametrise indirectly with a dict of RouterConfig overrides."""
    overrides = getattr(request, "param", None) or {}
    return router_factory(**overrides)


# --------------------------------------------------------------------------- connector


@pytest.fixture
def cranker_protocols() -> tuple[str, ...]:
    """Protocols offered by connectors from ``connector_factory`` unless a test says otherwise."""
    return V1


@pytest.fixture
def wss_connectors(
    router_factory: Any, target_factory: Any, cranker_protocols: tuple[str, ...]
) -> Iterator[Callable[..., Any]]:
    """Connectors with explicit router URLs (``wss://``); stopped before routers and targets."""
    from crank_sync import Connector

    started: list[Any] = []

    def make(router_url: str, target_url: str, route: str = "svc", **kwargs: Any) -> Any:
        kwargs.setdefault("protocols", cranker_protocols)
        kwargs.setdefault("v3_sockets", 2)  # the TLS and auth tests wait for two sockets, any kind
        conn = Connector(target=target_url, route=route, routers=[router_url],
                         component_name=f"component-{route}", **kwargs)
        started.append(conn)
        conn.start()
        return conn

    yield make
    results = [conn.stop(timeout=10.0) for conn in reversed(started)]
    assert all(results), f"connector stop() did not finish in time: {results}"


@pytest.fixture
def connector_factory(
    request: pytest.FixtureRequest,
    router_factory: RouterFactory,
    target_factory: Any,
    cranker_protocols: tuple[str, ...],
) -> Iterator[ConnectorFactory]:
    """Depends on the router and target factories so it is torn down before them."""

    def default_router() -> Any:
        return request.getfixturevalue("router")

    def default_target() -> Any:
        return request.getfixturevalue("target")

    factory = ConnectorFactory(default_router, default_target, tuple(cranker_protocols))
    yield factory
    factory.stop_all()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # never route loopback tests through a proxy from the environment
    yield s
    s.close()


# --------------------------------------------------------------------------- fake connector


@pytest.fixture
def fake_connector_factory() -> Iterator[Callable[..., FakeConnector]]:
    fakes: list[FakeConnector] = []

    def make(router: Any, route: str | None, wait: bool = True, **kwargs: Any) -> FakeConnector:
        key = route_key(route or "")
        before = router.idle_sockets(key)
        fake = FakeConnector(router, route, **kwargs)
        fakes.append(fake)
        if wait:
            wait_for(
                lambda: router.idle_sockets(key) >= before + 1,
                what=f"fake connector registered on {key!r}",
            )
        return fake

    yield make
    for fake in fakes:
        fake.abort()


# --------------------------------------------------------------------------- thread-leak check


@pytest.fixture(autouse=True)
def no_leaked_crank_threads() -> Iterator[None]:
    """Autouse, so it is set up first and torn down last: after every other fixture stopped."""

    def crank_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("crank-") and t.is_alive()}

    before = crank_threads()
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in crank_threads() if t not in before]

    deadline = time.monotonic() + 10.0
    while leaked() and time.monotonic() < deadline:
        time.sleep(0.02)
    remaining = leaked()
    if remaining:
        names = sorted(t.name for t in remaining)
        pytest.fail(f"crank threads still alive after teardown: {names}")


# --------------------------------------------------------------------------- collection


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test without its own timeout mark a hard limit so a hang fails."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_SECONDS))
