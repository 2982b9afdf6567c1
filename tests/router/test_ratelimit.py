"""Token buckets (crank_sync.router.ratelimit) on an injected clock: no sleeps."""
from __future__ import annotations

import pytest

from crank_sync.router.ratelimit import LocalBuckets, take


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("tokens, stamp, now, rate, burst, expected", [
    (5.0, 0.0, 0.0, 1.0, 5, (4.0, 0.0)),  # a token taken
    (0.0, 0.0, 0.0, 2.0, 5, (0.0, 0.5)),  # empty: half a second for one at 2/s
    (0.5, 0.0, 0.0, 1.0, 5, (0.5, 0.5)),
    (0.0, 0.0, 1.0, 2.0, 5, (1.0, 0.0)),  # refilled two, took one
    (0.0, 0.0, 100.0, 2.0, 5, (4.0, 0.0)),  # refills stop at the burst
    (3.0, 10.0, 5.0, 1.0, 5, (2.0, 0.0)),  # a clock that went back refills nothing
])
def test_take(tokens: float, stamp: float, now: float, rate: float, burst: int,
              expected: tuple[float, float]) -> None:
    assert take(tokens, stamp, now, rate, burst) == pytest.approx(expected)


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    assert [buckets.check("k", 10.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.check("k", 10.0, 3) == pytest.approx(0.1)
    clock.now += 0.05
    assert buckets.check("k", 10.0, 3) == pytest.approx(0.05)  # half a token there
    clock.now += 0.05
    assert buckets.check("k", 10.0, 3) == 0.0
    assert buckets.check("k", 10.0, 3) > 0
    clock.now += 10
    assert [buckets.check("k", 10.0, 3) for _ in range(4)][:3] == [0.0, 0.0, 0.0]


def test_refused_requests_take_nothing() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    buckets.check("k", 1.0, 1)
    for _ in range(50):
        assert buckets.check("k", 1.0, 1) == pytest.approx(1.0)
    clock.now += 1.0
    assert buckets.check("k", 1.0, 1) == 0.0


def test_keys_are_separate() -> None:
    buckets = LocalBuckets(Clock())
    assert buckets.check("a", 1.0, 1) == 0.0
    assert buckets.check("a", 1.0, 1) > 0
    assert buckets.check("b", 1.0, 1) == 0.0


def test_an_hourly_rate() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    rate = 10 / 3600
    assert buckets.check("k", rate, 1) == 0.0
    assert buckets.check("k", rate, 1) == pytest.approx(360.0)
    clock.now += 359
    assert buckets.check("k", rate, 1) == pytest.approx(1.0)
    clock.now += 1
    assert buckets.check("k", rate, 1) == 0.0


def test_full_buckets_are_forgotten() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    for i in range(1000):
        buckets.check(f"client-{i}", 1.0, 2)
    assert len(buckets) == 1000
    clock.now += 2.0  # every bucket is full again
    for i in range(24):
        buckets.check(f"late-{i}", 1.0, 2)  # the 1,024th check sweeps
    assert len(buckets) == 24


def test_at_most_max_keys_the_least_recently_used_go() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock, max_keys=3)
    for key in ("a", "b", "c"):
        buckets.check(key, 1.0, 1)
    buckets.check("a", 1.0, 1)  # a is used again: b is now the oldest
    buckets.check("d", 1.0, 1)
    assert len(buckets) == 3
    assert buckets.check("b", 1.0, 1) == 0.0  # b restarted full
    assert buckets.check("a", 1.0, 1) > 0  # a was kept, empty
