"""Registered connector sockets, by route: acquire, discard, wait.

v1 sockets carry one request each: ``acquire`` takes a socket out of the idle set for good,
and the socket leaves the registry when it closes. A route stays known while it has sockets,
and for ``grace`` seconds after its last one closed, so a request arriving between a v1
socket's end and its replacement's registration waits instead of getting 404.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

from ..errors import NoConnectorAvailable, NoRoute
from .websocket import RouterWebSocket

log = logging.getLogger(__name__)

CATCH_ALL = "*"


@dataclass(eq=False)
class ConnectorSocket:
    """A registered websocket and what it was registered with."""

    ws: RouterWebSocket
    route: str
    connector_instance_id: str
    component_name: str
    remote_ip: str
    protocol: str
    registered_at: float = field(default_factory=time.time)


@dataclass(eq=False)
class _Route:
    idle: collections.deque[ConnectorSocket] = field(default_factory=collections.deque)
    busy: set[ConnectorSocket] = field(default_factory=set)
    emptied_at: float | None = None

    @property
    def empty(self) -> bool:
        return not self.idle and not self.busy


class SocketRegistry:
    """All connector sockets of one router, grouped by route."""

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._cond = threading.Condition()
        self._routes: dict[str, _Route] = {}
        self._closed = False

    # -- registration ------------------------------------------------------------------------

    def add(self, sock: ConnectorSocket) -> bool:
        """Make ``sock`` available to requests; False when the registry is closed."""
        with self._cond:
            if self._closed:
                return False
            route = self._routes.setdefault(sock.route, _Route())
            route.idle.append(sock)
            route.emptied_at = None
            self._cond.notify_all()
            return True

    def remove(self, sock: ConnectorSocket) -> None:
        """Forget ``sock`` (it closed). Safe to call more than once."""
        with self._cond:
            route = self._routes.get(sock.route)
            if route is None:
                return
            try:
                route.idle.remove(sock)
            except ValueError:
                pass
            route.busy.discard(sock)
            if route.empty and route.emptied_at is None:
                route.emptied_at = time.monotonic()

    def take_idle_of(self, connector_instance_id: str) -> list[ConnectorSocket]:
        """Remove and return the idle sockets of a connector instance (deregistration)."""
        with self._cond:
            taken = []
            for route in self._routes.values():
                mine = [s for s in route.idle if s.connector_instance_id == connector_instance_id]
                for sock in mine:
                    route.idle.remove(sock)
                    route.busy.add(sock)  # out of rotation, but still counted until it closes
                taken.extend(mine)
            return taken

    def close(self) -> list[ConnectorSocket]:
        """Refuse new registrations and return every socket, idle or busy."""
        with self._cond:
            self._closed = True
            everything = [s for r in self._routes.values() for s in (*r.idle, *r.busy)]
            self._cond.notify_all()
            return everything

    # -- requests ----------------------------------------------------------------------------

    def _resolve(self, name: str, now: float) -> _Route | None:
        for key in (name, CATCH_ALL):
            route = self._routes.get(key)
            if route is None:
                continue
            if route.empty and route.emptied_at is not None and now - route.emptied_at > self._grace:
                del self._routes[key]
                continue
            return route
        return None

    def acquire(self, name: str, timeout: float) -> ConnectorSocket:
        """Take an idle socket for route ``name`` (or the catch-all), waiting up to ``timeout``.

        Raises NoRoute when neither the route nor a catch-all is registered, and
        NoConnectorAvailable when no idle socket turned up in time.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                route = None if self._closed else self._resolve(name, now)
                if route is None:
                    raise NoRoute(f"no connector registered for route {name!r}")
                while route.idle:
                    sock = route.idle.popleft()
                    if sock.ws.connected and not sock.ws.finished:
                        sock.ws.in_use = True
                        route.busy.add(sock)
                        return sock
                if now >= deadline:
                    raise NoConnectorAvailable(
                        f"no idle connector socket for route {name!r} within {timeout:.1f}s"
                    )
                self._cond.wait(deadline - now)

    # -- inspection --------------------------------------------------------------------------

    def idle_count(self, name: str) -> int:
        with self._cond:
            route = self._routes.get(name)
            return len(route.idle) if route else 0

    def snapshot(self) -> dict[str, dict[str, list[ConnectorSocket]]]:
        with self._cond:
            return {
                name: {"idle": list(r.idle), "busy": list(r.busy)}
                for name, r in self._routes.items()
            }
