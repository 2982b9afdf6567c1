"""Real routers and connectors started with the suite's defaults; the fixtures in
``tests/conftest.py`` own them and stop every one at teardown."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .protocols import MIXED, V1
from .sockets import LOOPBACK
from .waiting import wait_for

ROUTER_DEFAULTS: dict[str, Any] = dict(
    host=LOOPBACK,
    http_port=0,
    registration_port=0,
    connector_max_wait=5.0,
    idle_timeout=60.0,
    max_header_bytes=65536,
    ping_interval=20.0,
    via_name="crank_sync",
)


class RouterFactory:
    """Starts routers with test defaults; stops every one it started at teardown."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.stopped: set[int] = set()

    def __call__(self, **overrides: Any) -> Any:
        from crank_sync import Router, RouterConfig

        listeners = overrides.pop("listeners", ())
        cfg = RouterConfig(**{**ROUTER_DEFAULTS, **overrides})
        router = Router(cfg, listeners=listeners)
        self.started.append(router)
        router.start()
        return router

    def stop(self, router: Any, timeout: float | None = None) -> Any:
        """Stop once; ``timeout`` is the drain deadline (the router's default when None)."""
        if id(router) in self.stopped:
            return None
        self.stopped.add(id(router))
        return router.stop() if timeout is None else router.stop(timeout=timeout)

    def stop_all(self) -> None:
        errors = []
        for router in reversed(self.started):
            try:
                self.stop(router)
            except Exception as err:  # keep stopping the others
                errors.append(err)
        if errors:
            raise errors[0]


def route_key(route: str) -> str:
    return route or "*"


class ConnectorFactory:
    """Starts connectors and waits until the router(s) see the full sliding window.

    ``stop(conn, timeout)`` records the stop so teardown does not stop twice; teardown stops the
    rest and asserts that each finished in time.
    """

    def __init__(
        self,
        default_router: Callable[[], Any],
        default_target: Callable[[], Any],
        default_protocols: tuple[str, ...],
    ):
        self._default_router = default_router
        self._default_target = default_target
        self.default_protocols = default_protocols
        self.started: list[Any] = []
        self.stopped: set[int] = set()

    def __call__(
        self,
        target: Any = None,
        route: str = "svc",
        routers: list[Any] | None = None,
        sliding_window: int = 2,
        wait: bool = True,
        **kwargs: Any,
    ) -> Any:
        from crank_sync import Connector

        if self.default_protocols == MIXED and "protocols" not in kwargs:
            # one v1 and one v3 connector on the same route, used as one
            kwargs.pop("protocols", None)
            parts = [self(target, route, routers, sliding_window, wait=False, protocols=p, **kwargs)
                     for p in (V1, ("3.0",))]
            for part in parts:
                self.stopped.add(id(part))  # the pair is stopped as one
            pair = MixedConnector(parts)
            self.started.append(pair)
            if wait:
                for r in routers or [self._default_router()]:
                    wait_for(
                        lambda r=r: r.idle_sockets(route_key(route)) >= 2 * sliding_window,
                        what=f"{2 * sliding_window} idle sockets (v1 + v3) for {route!r}",
                    )
            return pair
        if target is None:
            target = self._default_target()
        target_url = target if isinstance(target, str) else target.url
        if routers is None:
            routers = [self._default_router()]
        # the suite counts sockets by sliding_window: a v3 connector here keeps as many v3
        # sockets (tests of the v3_sockets default pass v3_sockets themselves)
        kwargs.setdefault("v3_sockets", sliding_window)
        conn = Connector(
            target=target_url,
            route=route,
            routers=[f"ws://{LOOPBACK}:{r.registration_port}" for r in routers],
            component_name=kwargs.pop("component_name", f"component-{route_key(route)}"),
            protocols=kwargs.pop("protocols", self.default_protocols),
            sliding_window=sliding_window,
            **kwargs,
        )
        self.started.append(conn)
        conn.start()
        if wait:
            for r in routers:
                wait_for(
                    lambda r=r: r.idle_sockets(route_key(route)) >= sliding_window,
                    what=f"{sliding_window} idle sockets for route {route_key(route)!r}",
                )
            wait_for(
                lambda: conn.idle_count() >= sliding_window * len(routers),
                what="connector idle_count to reach its window",
            )
        return conn

    def stop(self, conn: Any, timeout: float = 10.0) -> bool:
        self.stopped.add(id(conn))
        return conn.stop(timeout=timeout)

    def stop_all(self) -> None:
        results = []
        for conn in reversed(self.started):
            if id(conn) in self.stopped:
                continue
            self.stopped.add(id(conn))
            results.append(conn.stop(timeout=10.0))
        assert all(results), f"connector stop() did not finish in time: {results}"


class MixedConnector:
    """A v1 connector and a v3 connector on the same route, driven as one."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.connector_instance_id = parts[0].connector_instance_id
        self.config = parts[0].config

    def idle_count(self) -> int:
        return sum(p.idle_count() for p in self.parts)

    def busy_count(self) -> int:
        return sum(p.busy_count() for p in self.parts)

    def stop(self, timeout: float = 10.0) -> bool:
        results = [False] * len(self.parts)

        def stop_one(i: int) -> None:
            results[i] = self.parts[i].stop(timeout=timeout)

        threads = [threading.Thread(target=stop_one, args=(i,), name=f"test-stop-{i}")
                   for i in range(len(self.parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 15)
        return all(results)


def registered(router: Any, conn: Any, route: str = "svc", window: int = 2) -> None:
    """Wait until ``router`` has ``window`` idle sockets for ``route`` and ``conn`` as many."""
    wait_for(lambda: router.idle_sockets(route) >= window and conn.idle_count() >= window,
             what=f"{window} registered sockets for {route!r}")
