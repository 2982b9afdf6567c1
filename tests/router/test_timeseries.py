"""The dashboard's data: ``crank_sync.router.timeseries``, driven by a fake clock (no sleeps)."""
from __future__ import annotations

import random

import pytest

from crank_sync.router.timeseries import (
    LATENCY_BOUNDS,
    OTHER,
    RouteMemory,
    TimeSeries,
    latency_bin,
    percentile,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_latency_bins_are_log_spaced_and_cover_every_duration():
    assert latency_bin(0.0) == 0
    assert latency_bin(LATENCY_BOUNDS[0]) == 0
    for i, bound in enumerate(LATENCY_BOUNDS):
        assert latency_bin(bound) == i, bound
        assert latency_bin(bound * 1.01) == min(i + 1, len(LATENCY_BOUNDS))
    assert latency_bin(1e9) == len(LATENCY_BOUNDS)  # the open last bin
    ratios = {round(b / a, 9) for a, b in zip(LATENCY_BOUNDS, LATENCY_BOUNDS[1:], strict=False)}
    assert ratios == {round(2 ** 0.5, 9)}


def test_percentiles_within_one_bin_of_the_truth():
    rng = random.Random(7)
    samples = [rng.lognormvariate(-4, 1.2) for _ in range(5000)]
    hist = [0] * (len(LATENCY_BOUNDS) + 1)
    for s in samples:
        hist[latency_bin(s)] += 1
    ordered = sorted(samples)
    for fraction in (0.5, 0.99):
        true = ordered[int(fraction * len(ordered)) - 1]
        estimate = percentile(hist, fraction)
        assert estimate is not None
        assert true / 2 ** 0.5 <= estimate <= true * 2 ** 0.5, (fraction, true, estimate)
    assert percentile([0] * len(hist), 0.5) is None


def test_counts_errors_bytes_and_latency_per_bucket():
    clock = Clock(1000.0)  # bucket 100 starts at 1000 s
    ts = TimeSeries(bucket_seconds=10, window_seconds=60, clock=clock)
    ts.record("a", 200, 0.010, 5, 100)
    ts.record("a", 404, 0.010, 0, 50)
    ts.record("a", 503, 0.010, 0, 20)
    ts.record("b", 200, 1.0, 0, 1)
    clock.now = 1012.0  # next bucket, 2 s into it
    ts.record("a", 200, 0.001, 1, 2)
    out = ts.series(minutes=1)
    assert out["bucket_seconds"] == 10
    assert out["start"] == [960, 970, 980, 990, 1000, 1010]
    a = out["routes"]["a"]
    assert a["requests"] == [0, 0, 0, 0, 3, 1]
    assert a["4xx"] == [0, 0, 0, 0, 1, 0]
    assert a["5xx"] == [0, 0, 0, 0, 1, 0]
    assert a["bytes_in"][-2:] == [5, 1] and a["bytes_out"][-2:] == [170, 2]
    assert a["rps"][-2:] == [0.3, 0.5]  # a full bucket over 10 s, the current one over 2 s
    assert a["p50_ms"][:4] == [None] * 4
    assert 10 / 2 ** 0.5 <= a["p50_ms"][4] <= 10 * 2 ** 0.5
    assert 1 / 2 ** 0.5 <= a["p99_ms"][5] <= 1 * 2 ** 0.5
    b = out["routes"]["b"]
    assert b["requests"][-2:] == [1, 0]
    assert 1000 / 2 ** 0.5 <= b["p99_ms"][4] <= 1000 * 2 ** 0.5
    assert all(len(v) == 6 for v in (*a.values(), *b.values()))


def test_old_buckets_leave_the_window_and_slots_are_reused():
    clock = Clock(1000.0)
    ts = TimeSeries(bucket_seconds=10, window_seconds=60, clock=clock)
    ts.record("a", 200, 0.01, 0, 0)
    clock.now += 60  # the same ring slot, six buckets later
    ts.record("a", 200, 0.01, 0, 0)
    assert ts.series(1)["routes"]["a"]["requests"] == [0, 0, 0, 0, 0, 1]
    clock.now += 60
    assert "a" not in ts.series(1)["routes"], "a route quiet for the whole window is left out"
    assert ts.series(0.25)["start"] == [1110, 1120]  # minutes shorten the answer


def test_routes_beyond_the_limit_fold_into_other():
    clock = Clock()
    ts = TimeSeries(bucket_seconds=10, window_seconds=60, max_routes=3, clock=clock)
    for i in range(50):
        ts.record(f"r{i}", 200, 0.01, 0, 0)
    assert ts.routes() == sorted(["r0", "r1", "r2", OTHER])
    assert sum(ts.series(1)["routes"][OTHER]["requests"]) == 47
    # once the first routes have been quiet for the whole window, new ones get their own series
    clock.now += 70
    ts.record("fresh", 200, 0.01, 0, 0)
    assert "fresh" in ts.routes() and "r0" not in ts.routes()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        TimeSeries(bucket_seconds=0)
    with pytest.raises(ValueError):
        TimeSeries(bucket_seconds=10, window_seconds=5)


def test_route_memory_remembers_routes_and_first_registration():
    clock = Clock(500.0)
    memory = RouteMemory(keep_seconds=100, max_entries=10, clock=clock)
    memory.seen("svc", "inst-1")
    clock.now = 550.0
    memory.seen("svc", "inst-1")  # a later socket of the same instance
    assert memory.since("svc", "inst-1") == 500.0
    assert memory.routes() == {"svc": 550.0}
    clock.now = 651.0
    assert memory.routes() == {}, "forgotten keep_seconds after it was last seen"
    memory.seen("svc", "inst-1")  # back after a long absence: registered anew
    assert memory.since("svc", "inst-1") == 651.0
    assert memory.since("svc", "other") is None


def test_route_memory_is_bounded():
    clock = Clock()
    memory = RouteMemory(keep_seconds=1000, max_entries=10, clock=clock)
    for i in range(100):
        clock.now += 1
        memory.seen(f"r{i}", "inst")
    routes = memory.routes()
    assert len(routes) <= 10
    assert "r99" in routes and "r0" not in routes  # the most recent are kept
