"""The limiter listener (crank_sync.router.limiter) driven directly: which bucket a request
takes from, 429 and 503 with Retry-After, slots given back once, the metrics, and no limiter
at all when no limit is set."""
from __future__ import annotations

import pytest

from crank_sync import Headers, Reject, RouterConfig
from crank_sync.limit_values import Rate, RouteLimits, limits_by_route
from crank_sync.router.core import RouterCore
from crank_sync.router.limiter import Limiter, bucket_key, limiter_for, retry_after
from crank_sync.router.ratelimit import LocalBuckets


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Info:
    """What the limiter reads of a ProxyInfo."""

    def __init__(self, route: str, client: str = "192.0.2.1") -> None:
        self.route, self.client_address = route, client


class Metrics:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def rejected(self, route: str, reason: str) -> None:
        self.seen.append((route, reason))


def make(config: RouterConfig) -> tuple[Limiter, Clock, Metrics]:
    clock, metrics = Clock(), Metrics()
    default, routes = limits_by_route(config)
    return Limiter(default, routes, LocalBuckets(clock), metrics), clock, metrics  # type: ignore[arg-type]


def refused(limiter: Limiter, info: Info) -> Reject | None:
    try:
        limiter.on_before_proxy_to_target(info, Headers())  # type: ignore[arg-type]
    except Reject as rej:
        return rej
    return None


@pytest.mark.parametrize("seconds, expected", [(0.001, "1"), (1.0, "1"), (1.01, "2"),
                                               (59.5, "60"), (360.0, "360")])
def test_retry_after_rounds_up(seconds: float, expected: str) -> None:
    assert retry_after(seconds) == expected


@pytest.mark.parametrize("limits, route, client, key", [
    (RouteLimits(rate_by="route"), "a", "c1", "route:a"),
    (RouteLimits(rate_by="client"), "a", "c1", "client::c1"),  # shared by default-rate routes
    (RouteLimits(rate_by="client", own_rate=True), "a", "c1", "client:a:c1"),
    (RouteLimits(rate_by="route+client"), "a", "c1", "route+client:a:c1"),
])
def test_bucket_keys(limits: RouteLimits, route: str, client: str, key: str) -> None:
    assert bucket_key(route, client, limits) == key


def test_over_the_rate_429_with_retry_after() -> None:
    limiter, clock, metrics = make(RouterConfig(rate_limit="2/s", rate_burst=2))
    assert refused(limiter, Info("a")) is None
    assert refused(limiter, Info("a")) is None
    rej = refused(limiter, Info("a"))
    assert rej is not None and rej.status == 429
    assert dict(rej.headers) == {"Retry-After": "1"}
    assert b"rate limit of 2/s" in rej.body
    assert refused(limiter, Info("b")) is None  # by route: b has its own bucket
    clock.now += 0.5
    assert refused(limiter, Info("a")) is None
    assert metrics.seen == [("a", "rate_limit")]


def test_by_client_and_route_tables() -> None:
    config = RouterConfig(rate_limit="1/min", rate_by="client",
                          routes={"vip": {"rate": "100/s"}, "open": {"rate": "none"}})
    limiter, _, metrics = make(config)
    assert refused(limiter, Info("a", "c1")) is None
    rej = refused(limiter, Info("b", "c1"))  # the default bucket of c1, shared by a and b
    assert rej is not None and rej.headers == [("Retry-After", "60")]
    assert refused(limiter, Info("a", "c2")) is None  # another client
    assert refused(limiter, Info("vip", "c1")) is None  # a route with a rate of its own
    assert all(refused(limiter, Info("open", "c1")) is None for _ in range(10))
    assert metrics.seen == [("b", "rate_limit")]


def test_concurrency_cap_slots_released_once_in_on_complete() -> None:
    limiter, _, metrics = make(RouterConfig(max_in_flight=1))
    first, second = Info("a"), Info("a")
    assert refused(limiter, first) is None
    rej = refused(limiter, second)
    assert rej is not None and rej.status == 503 and dict(rej.headers) == {"Retry-After": "1"}
    limiter.on_complete(second)  # refused: held nothing, gives nothing back
    assert limiter.slots.counts() == {"a": (1, 0)}
    limiter.on_complete(first)
    assert limiter.slots.counts() == {}
    limiter.on_complete(first)  # a second call changes nothing
    third = Info("a")
    assert refused(limiter, third) is None
    assert metrics.seen == [("a", "concurrency")]
    limiter.on_complete(third)


def test_queue_timeout_is_a_503() -> None:
    limiter, _, metrics = make(RouterConfig(routes={"a": {"max_in_flight": 1, "max_queue": 1,
                                                          "queue_timeout": 0.001}}))
    holder = Info("a")
    assert refused(limiter, holder) is None
    rej = refused(limiter, Info("a"))
    assert rej is not None and rej.status == 503 and b"waited too long" in rej.body
    assert metrics.seen == [("a", "queue_timeout")]
    assert refused(limiter, Info("b")) is None  # no cap on other routes
    limiter.on_complete(holder)


def test_a_rate_limited_request_takes_no_slot() -> None:
    limiter, _, metrics = make(RouterConfig(rate_limit="1/h", max_in_flight=5))
    first = Info("a")
    assert refused(limiter, first) is None
    second = Info("a")
    assert refused(limiter, second).status == 429  # type: ignore[union-attr]
    assert limiter.slots.counts() == {"a": (1, 0)}
    limiter.on_complete(second)
    limiter.on_complete(first)
    assert limiter.slots.counts() == {}


def test_no_limit_no_limiter() -> None:
    assert limiter_for(RouterConfig()) is None
    assert limiter_for(RouterConfig(trusted_proxies=("10.0.0.0/8",))) is None
    assert limiter_for(RouterConfig(routes={"a": {"rate": "none"}})) is None
    core = RouterCore(RouterConfig())
    assert core.limiter is None and not core.hooks.active


def test_the_limiter_is_the_first_listener() -> None:
    class Mine:
        def on_complete(self, info: object) -> None:
            pass

    mine = Mine()
    core = RouterCore(RouterConfig(routes={"a": {"max_in_flight": 3}}), [mine])
    assert core.limiter is not None
    assert core.hooks.listeners == (core.limiter, mine)
    assert core.limiter.limits("a").max_in_flight == 3
    assert core.limiter.limits("b") == RouteLimits()
    assert RouterCore(RouterConfig(rate_limit="5/s")).limiter.default.rate == Rate(5, 1)  # type: ignore[union-attr]
