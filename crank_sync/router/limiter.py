"""The router's rate limits and concurrency caps, as the first of its proxy listeners.

:func:`limiter_for` builds a :class:`Limiter` when the configuration sets any limit (and
nothing otherwise: a router without limits pays nothing). The router puts it first in its
listener list, so a refused request meets no other listener's ``on_before_proxy_to_target``
and never reaches a connector:

* over its rate: **429** with ``Retry-After`` (whole seconds, rounded up) and a short text;
* its route at ``max_in_flight`` with the queue full, or ``queue_timeout`` spent waiting in
  it: **503** with ``Retry-After``.

A request that got a slot gives it back in ``on_complete``, which the router calls exactly
once per request. Every refusal is counted in ``crank_requests_rejected_total{route,reason}``
(reason ``rate_limit``, ``concurrency`` or ``queue_timeout``).
"""
from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Protocol

from ..config import RouterConfig
from ..hooks import Headers, ProxyInfo, ProxyListener, Reject
from ..limit_values import RouteLimits, limits_by_route
from .concurrency import QUEUE_TIMEOUT, Slots
from .ratelimit import LocalBuckets

if TYPE_CHECKING:
    from .metrics import RouterMetrics

log = logging.getLogger(__name__)

RATE_LIMIT = "rate_limit"


class Buckets(Protocol):
    def check(self, key: str, rate: float, burst: int) -> float: ...


def retry_after(seconds: float) -> str:
    """``Retry-After`` for a wait of ``seconds``: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds - 1e-9)))


def bucket_key(route: str, client: str, limits: RouteLimits) -> str:
    """Which bucket a request takes from (see ``rate_by``): a client's bucket under the
    default rate is shared by the routes without a rate of their own."""
    if limits.rate_by == "route":
        return f"route:{route}"
    if limits.rate_by == "client":
        return f"client:{route if limits.own_rate else ''}:{client}"
    return f"route+client:{route}:{client}"


class Limiter(ProxyListener):
    """Rate limits and concurrency caps by route (and client); see the module docstring."""

    def __init__(self, default: RouteLimits, routes: dict[str, RouteLimits],
                 buckets: Buckets, metrics: RouterMetrics | None = None,
                 slots: Slots | None = None) -> None:
        self.default, self.routes = default, routes
        self.buckets = buckets
        self.slots = slots or Slots()
        self.metrics = metrics
        self._lock = threading.Lock()
        #: The requests holding a slot, and of which route.
        self._held: dict[ProxyInfo, str] = {}

    def limits(self, route: str) -> RouteLimits:
        return self.routes.get(route, self.default)

    def on_before_proxy_to_target(self, info: ProxyInfo, headers: Headers) -> None:
        route = info.route
        limits = self.limits(route)
        if limits.rate is not None:
            key = bucket_key(route, info.client_address, limits)
            wait = self.buckets.check(key, limits.rate.per_second, limits.bucket_size)
            if wait > 0:
                self._refused(route, RATE_LIMIT)
                raise Reject(429, f"Too many requests for route {route}: over its rate "
                             f"limit of {limits.rate}; retry later\n",
                             {"Retry-After": retry_after(wait)})
        if limits.max_in_flight > 0:
            refused = self.slots.acquire(route, limits.max_in_flight, limits.max_queue,
                                         limits.queue_timeout)
            if refused is not None:
                self._refused(route, refused)
                why = ("waited too long for a free slot" if refused == QUEUE_TIMEOUT
                       else "too many requests in progress")
                wait = limits.queue_timeout if limits.max_queue else 1.0
                raise Reject(503, f"Route {route} is busy: {why}; retry later\n",
                             {"Retry-After": retry_after(wait)})
            with self._lock:
                self._held[info] = route

    def on_complete(self, info: ProxyInfo) -> None:
        with self._lock:
            route = self._held.pop(info, None)
        if route is not None:
            self.slots.release(route)

    def _refused(self, route: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected(route, reason)

    def close(self) -> None:
        close = getattr(self.buckets, "close", None)
        if close is not None:
            close()


def limiter_for(config: RouterConfig, metrics: RouterMetrics | None = None) -> Limiter | None:
    """The limiter ``config`` asks for; None when it sets no limit."""
    default, routes = limits_by_route(config)
    if not default.active and not any(r.active for r in routes.values()):
        return None
    buckets: Buckets = LocalBuckets()
    if config.rate_limit_store is not None:
        from .redis_buckets import RedisBuckets

        buckets = RedisBuckets(config.rate_limit_store, config.rate_limit_store_timeout,
                               config.rate_limit_store_retry, LocalBuckets())
    return Limiter(default, routes, buckets, metrics)
