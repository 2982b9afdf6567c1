"""Concurrency caps: at most ``max_in_flight`` requests of a route at once, the next
``max_queue`` waiting for a slot in arrival order.

A request waits on its own client thread, on an event of its own, with a deadline
(``queue_timeout``); a slot that frees is handed to the oldest waiter directly (as the socket
pool hands over sockets), so a later request cannot take it first. One lock guards the
counts of every route and is held only to change them, never while waiting: a full route
never slows another. A route with nothing in flight and nobody waiting is forgotten, so
routes that come and go leave nothing behind.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

#: :meth:`Slots.acquire` outcomes besides None (a slot was taken).
CONCURRENCY = "concurrency"  #: in flight at the cap and the queue full (or no queue)
QUEUE_TIMEOUT = "queue_timeout"  #: waited ``queue_timeout`` without a slot


@dataclass(eq=False)
class _Waiter:
    ready: threading.Event = field(default_factory=threading.Event)
    granted: bool = False


@dataclass
class _Route:
    in_flight: int = 0
    waiters: deque[_Waiter] = field(default_factory=deque)


class Slots:
    """The in-flight requests of every capped route of one router."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}

    def acquire(self, route: str, limit: int, max_queue: int, timeout: float) -> str | None:
        """Take a slot of ``route`` (waiting up to ``timeout`` in its queue): None when one
        was taken (give it back with :meth:`release`), else why not."""
        with self._lock:
            state = self._routes.setdefault(route, _Route())
            if state.in_flight < limit and not state.waiters:
                state.in_flight += 1
                return None
            if len(state.waiters) >= max_queue:
                self._forget_if_idle(route, state)
                return CONCURRENCY
            waiter = _Waiter()
            state.waiters.append(waiter)
        waiter.ready.wait(timeout)
        with self._lock:
            if waiter.granted:
                return None
            state.waiters.remove(waiter)
            self._forget_if_idle(route, state)
            return QUEUE_TIMEOUT

    def release(self, route: str) -> None:
        """Give a slot of ``route`` back: to its oldest waiter, if any."""
        with self._lock:
            state = self._routes.get(route)
            if state is None:
                return
            if state.waiters:
                waiter = state.waiters.popleft()
                waiter.granted = True  # the slot passes on: in_flight stays as it is
                waiter.ready.set()
                return
            state.in_flight = max(0, state.in_flight - 1)
            self._forget_if_idle(route, state)

    def _forget_if_idle(self, route: str, state: _Route) -> None:
        if state.in_flight == 0 and not state.waiters and self._routes.get(route) is state:
            del self._routes[route]

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{route: (in flight, waiting)}`` for the routes with either."""
        with self._lock:
            return {r: (s.in_flight, len(s.waiters)) for r, s in self._routes.items()}
