"""Registered connector sockets, by route: acquire, discard, wait.

v1 sockets carry one request each: ``acquire`` takes a socket out of the idle set for good,
and the socket leaves the registry when it closes. v3 sockets carry many requests at once
and stay in the pool, spread round-robin; a route with both kinds alternates. v3 sockets of a
``Domain`` serve requests whose ``Host`` matches it, before path routing. A route stays known
while it has sockets, and ``grace`` seconds after its last one closed: a request arriving
between a v1 socket's end and its replacement's registration waits instead of getting 404.

Requests that find no socket wait in arrival order: each waiter has its own slot, and a socket
that turns up goes to the oldest waiter directly, so a later request cannot take it first (with
a plain condition variable, one waiter in a few thousand was overtaken until it timed out).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ClientGone, NoConnectorAvailable, NoRoute, WebSocketsUnsupported
from ..protocol.routes import CATCH_ALL, candidates, host_name, resolve
from .connector_socket import ConnectorSocket

log = logging.getLogger(__name__)

__all__ = ["ConnectorSocket", "SocketRegistry"]


@dataclass(eq=False)
class _Waiter:
    """A request waiting: the registry sets ``sock`` (under its lock), then ``ready``."""

    ready: threading.Event = field(default_factory=threading.Event)
    sock: ConnectorSocket | None = None
    #: A websocket upgrade: only a socket of a connector that tunnels them will do.
    tunnel: bool = False


@dataclass(eq=False)
class _Route:
    #: Requests waiting for this route's sockets, oldest first.
    waiters: collections.deque[_Waiter] = field(default_factory=collections.deque)
    idle: collections.deque[ConnectorSocket] = field(default_factory=collections.deque)
    busy: set[ConnectorSocket] = field(default_factory=set)
    v3: list[ConnectorSocket] = field(default_factory=list)
    toggle: int = 0
    rr: int = 0
    emptied_at: float | None = None

    @property
    def empty(self) -> bool:
        return not self.idle and not self.busy and not self.v3

    def tunnels(self) -> bool:
        """Some socket of the route, idle or not, takes websocket upgrades."""
        return any(s.tunnels for group in (self.v3, self.idle, self.busy) for s in group)

    def pick(self, dark: frozenset[str], tunnel: bool = False) -> ConnectorSocket | None:
        """Next socket: v3 round-robin, alternating with idle v1 ones; ``dark`` IPs skipped,
        and with ``tunnel`` the sockets that take no websocket upgrades."""
        self.toggle += 1
        if self.v3 and (not self.idle or self.toggle % 2):
            for _ in range(len(self.v3)):
                self.rr = (self.rr + 1) % len(self.v3)
                sock = self.v3[self.rr]
                if sock.ws.connected and not sock.ws.finished and sock.remote_ip not in dark \
                        and sock.tunnels >= tunnel:
                    return sock
        for sock in list(self.idle):
            if not sock.ws.connected or sock.ws.finished:
                self.idle.remove(sock)  # its handler thread forgets it too, shortly
            elif sock.remote_ip not in dark and sock.tunnels >= tunnel:
                self.idle.remove(sock)
                sock.ws.in_use = True
                self.busy.add(sock)
                return sock
        return None


class SocketRegistry:
    """All connector sockets of one router, grouped by route."""

    def __init__(self, grace: float, resolver: str = "first-segment") -> None:
        #: How long a route whose last socket left stays known (requests get 503, not 404).
        self._grace = grace
        self._resolver = resolver
        self._swept = float("-inf")
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._domains: dict[str, _Route] = {}
        self._dark: frozenset[str] = frozenset()
        self._deregistered: dict[str, float] = {}
        #: sockets per connector instance, and the instances logged as arrived and not yet
        #: as gone: a connector is logged when it arrives, not for each v1 socket it opens
        self._members: dict[str, set[ConnectorSocket]] = {}
        self._announced: set[str] = set()
        self._closed = False
        #: Requests currently waiting for a socket.
        self.waiting = 0

    # -- registration ------------------------------------------------------------------------

    def add(self, sock: ConnectorSocket, began: float = float("inf")) -> bool:
        """Make ``sock`` available to requests. False when the registry is closed, or when its
        connector deregistered after this socket's handshake ``began`` (time.monotonic()): the
        upgrade answer goes out before the socket is added, so a deregistration can slip in
        between, and the socket must not outlive it."""
        with self._lock:
            if self._closed:
                return False
            if self._deregistered.get(sock.connector_instance_id, -1.0) >= began:
                return False
            route = self._group_of(sock, create=True)
            assert route is not None
            if sock.is_v3:
                route.v3.append(sock)
            else:
                route.idle.append(sock)
            route.emptied_at = None
            self._hand_over(route)
            instance = sock.connector_instance_id
            self._members.setdefault(instance, set()).add(sock)
            arrived = instance not in self._announced
            if arrived:
                if len(self._announced) > 10000:  # v1 connectors that vanished mid-request
                    self._announced &= set(self._members)
                self._announced.add(instance)
        if arrived:
            log.info("connector %s (%s) registered route %r from %s with %s", instance,
                     sock.component_name or "no component name", sock.route, sock.remote_ip,
                     sock.protocol)
        return True

    def remove(self, sock: ConnectorSocket) -> None:
        """Forget ``sock`` (it closed). Safe to call more than once."""
        with self._lock:
            route = self._group_of(sock, create=False)
            if route is None:
                return
            for group in (route.idle, route.v3):
                try:
                    group.remove(sock)
                except ValueError:
                    pass
            route.busy.discard(sock)
            if route.empty and route.emptied_at is None:
                route.emptied_at = time.monotonic()
            lost = self._forget(sock)
        if lost:
            log.info("connector %s (%s) for route %r from %s is gone without deregistering",
                     sock.connector_instance_id, sock.component_name or "no component name",
                     sock.route, sock.remote_ip)

    def _forget(self, sock: ConnectorSocket) -> bool:
        """``sock`` left (under the lock): True when it was its connector's last and the
        connector did not say goodbye. A v1 socket that carried a request ends normally, and
        its replacement may not have registered yet: that is no loss."""
        instance = sock.connector_instance_id
        members = self._members.get(instance)
        if members is None or sock not in members:
            return False
        members.discard(sock)
        if members:
            return False
        del self._members[instance]
        deregistered = instance in self._deregistered
        if sock.ws.in_use and not sock.is_v3 and not deregistered:
            return False
        if instance not in self._announced:
            return False
        self._announced.discard(instance)
        return not self._closed and not deregistered

    def _group_of(self, sock: ConnectorSocket, create: bool) -> _Route | None:
        if sock.is_v3 and sock.domain != "*":
            table, key = self._domains, sock.domain.lower()
        else:
            table, key = self._routes, sock.route
        route = table.get(key)
        if route is None and create:
            route = table[key] = _Route()
        return route

    def _hand_over(self, route: _Route) -> None:
        """Give the route's available sockets to its waiters, oldest first (lock held)."""
        for waiter in sorted(route.waiters, key=lambda w: not w.tunnel):  # pickiest first
            sock = route.pick(self._dark, waiter.tunnel)
            if sock is None:
                if waiter.tunnel:
                    continue
                return
            route.waiters.remove(waiter)
            waiter.sock = sock
            waiter.ready.set()

    def _give_back(self, sock: ConnectorSocket) -> None:
        """A socket handed to a request whose client left before using it: to the next
        waiter, or idle again (lock held)."""
        route = self._group_of(sock, create=False)
        if route is None or sock.is_v3:
            return  # a v3 socket never left the pool
        route.busy.discard(sock)
        sock.ws.in_use = False
        if sock.ws.connected and not sock.ws.finished and not self._closed:
            route.idle.appendleft(sock)
            self._hand_over(route)

    def take_idle_of(self, connector_instance_id: str) -> list[ConnectorSocket]:
        """Remove and return the idle sockets of a connector instance (deregistration)."""
        with self._lock:
            now = time.monotonic()
            if len(self._deregistered) > 1000:  # keep only recent ones: memory stays bounded
                self._deregistered = {k: t for k, t in self._deregistered.items()
                                      if now - t < 60}
            self._deregistered[connector_instance_id] = now
            taken = []
            for route in (*self._routes.values(), *self._domains.values()):
                for group in (route.idle, route.v3):
                    mine = [s for s in group if s.connector_instance_id == connector_instance_id]
                    for sock in mine:
                        group.remove(sock)  # type: ignore[arg-type]
                        route.busy.add(sock)  # out of rotation, still counted until it closes
                    taken.extend(mine)
            return taken

    def close(self) -> list[ConnectorSocket]:
        """Refuse new registrations and return every socket, idle or busy."""
        with self._lock:
            self._closed = True
            groups = (*self._routes.values(), *self._domains.values())
            everything = [s for r in groups for s in (*r.idle, *r.busy, *r.v3)]
            for route in groups:
                for waiter in route.waiters:
                    waiter.ready.set()  # with no socket: the registry is closed
            return everything

    # -- requests ----------------------------------------------------------------------------

    def route_name(self, path: str) -> str:
        """The route a request for ``path`` would go to now: a registered one, else the
        catch-all ``*`` when registered, else the name it looks for."""
        key = resolve(path, self._resolver, self._routes.__contains__)
        if key is None and CATCH_ALL in self._routes:
            return CATCH_ALL
        return key or self._shown(path)

    def _shown(self, path: str) -> str:
        """The route a request for ``path`` looked for, as error messages name it."""
        return next(candidates(path, self._resolver), path)

    def _expired(self, route: _Route, now: float) -> bool:
        return (route.empty and route.emptied_at is not None and not route.waiters
                and now - route.emptied_at > self._grace)

    def _sweep(self, now: float) -> None:
        """Forget routes that have been empty for longer than the keep time (lock held); at
        most once a second, so a request does not pay for looking at every route."""
        if now - self._swept < 1.0:
            return
        self._swept = now
        for table in (self._routes, self._domains):
            for key in [k for k, r in table.items() if self._expired(r, now)]:
                del table[key]

    def _resolve(self, path: str, now: float) -> _Route | None:
        """The route for request ``path`` (or a bare route name) under the resolver, else the
        catch-all, else None."""
        self._sweep(now)
        key = resolve(path, self._resolver, self._routes.__contains__)
        route = self._routes.get(key) if key is not None else None
        return route if route is not None else self._routes.get(CATCH_ALL)

    def acquire(self, name: str, timeout: float, host: str | None = None,
                gone: Callable[[], bool] | None = None,
                check_every: float = 0.25, tunnel: bool = False) -> ConnectorSocket:
        """A socket for route ``name`` (or the catch-all), waiting up to ``timeout``.

        A v1 socket is taken out of the pool; a v3 socket stays in it. When ``host`` matches
        a registered v3 domain, that domain's sockets are used first. Waiting requests are
        served in arrival order; ``gone()`` is asked every ``check_every`` seconds while
        waiting, and True (the client left) ends the wait.

        Raises NoRoute when neither the route nor a catch-all is registered,
        NoConnectorAvailable when no idle socket turned up in time, and ClientGone. With
        ``tunnel`` (a websocket upgrade), only sockets that take upgrades will do, and a route
        with none raises WebSocketsUnsupported.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            route, sock = self._available(name, host, tunnel)
            if sock is not None:
                return sock
            waiter = _Waiter(tunnel=tunnel)
            route.waiters.append(waiter)
            self.waiting += 1
        client_left = False
        keep = False  # a socket handed over while this wait failed goes back, never astray
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or waiter.ready.wait(min(remaining, check_every)):
                    break
                if gone is not None and gone():
                    client_left = True
                    break
            keep = not client_left
        finally:
            with self._lock:
                self.waiting -= 1
                sock, waiter.sock = waiter.sock, None
                if sock is None:
                    try:
                        route.waiters.remove(waiter)
                    except ValueError:
                        pass
                elif not keep:
                    self._give_back(sock)
                    sock = None
                closed = self._closed
        if sock is not None:
            return sock
        if client_left:
            raise ClientGone("client disconnected while waiting for a connector socket")
        if closed:
            raise NoRoute(f"no connector registered for route {self._shown(name)!r}")
        raise NoConnectorAvailable(
            f"no idle connector socket for route {self._shown(name)!r} within {timeout:.1f}s")

    def _available(self, name: str, host: str | None,
                   tunnel: bool) -> tuple[_Route, ConnectorSocket | None]:
        """The route for ``name`` and a socket from it, unless earlier requests are waiting
        for one (lock held). Raises NoRoute."""
        if host and not self._closed and self._domains:
            domain = self._domains.get(host_name(host))
            if domain is not None:
                sock = domain.pick(self._dark, tunnel)
                if sock is not None:
                    return domain, sock
        route = None if self._closed else self._resolve(name, time.monotonic())
        if route is None:
            raise NoRoute(f"no connector registered for route {self._shown(name)!r}")
        if tunnel and not route.tunnels():
            raise WebSocketsUnsupported(f"no connector of route {self._shown(name)!r} "
                                        "carries websockets")
        if any(w.tunnel == tunnel for w in route.waiters):  # first come, first served
            return route, None
        return route, route.pick(self._dark, tunnel)

    # -- dark mode ---------------------------------------------------------------------------

    def set_dark(self, ip: str, dark: bool) -> None:
        """Take every connector from ``ip`` out of rotation (or put it back)."""
        with self._lock:
            self._dark = self._dark | {ip} if dark else self._dark - {ip}
            for route in (*self._routes.values(), *self._domains.values()):
                self._hand_over(route)

    def dark_ips(self) -> list[str]:
        with self._lock:
            return sorted(self._dark)

    # -- inspection --------------------------------------------------------------------------

    def known(self, name: str) -> bool:
        """Whether ``name`` is one of this router's routes: registered now, or kept since its
        last socket left (``route_keep_time``)."""
        with self._lock:
            return name in self._routes

    def idle_count(self, name: str) -> int:
        with self._lock:
            return len(r.idle) + len(r.v3) if (r := self._routes.get(name)) else 0

    def snapshot(self) -> dict[str, dict[str, list[ConnectorSocket]]]:
        """Sockets by route (domain groups as ``domain:<host>``): idle v1, busy v1, v3."""
        with self._lock:
            self._sweep(time.monotonic())
            groups = {**self._routes, **{f"domain:{d}": r for d, r in self._domains.items()}}
            return {
                name: {"idle": list(r.idle), "busy": list(r.busy), "v3": list(r.v3)}
                for name, r in groups.items()
            }
