"""What the dashboard draws: per-route traffic over the last minutes, and recently seen routes.

:class:`TimeSeries` keeps, per route, a ring of fixed-width buckets (10 s over 15 minutes by
default). A bucket holds counts (requests, 4xx, 5xx, body bytes in and out) and a small
latency histogram with log-spaced bounds, so p50 and p99 come out without keeping samples.
Memory is bounded: buckets are made only when a request lands in them, and at most
``max_routes`` routes get series of their own; requests of further routes are folded into
:data:`OTHER`.

:class:`RouteMemory` remembers which routes had connectors, and since when each connector
instance has been registered, so the dashboard can show a route whose connectors all left as
down instead of dropping it. It is bounded in the same way.

Both take a ``clock`` (wall-clock seconds, :func:`time.time` by default), so tests can drive
them with a fake one; neither ever sleeps or starts a thread.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

#: The series that requests of routes beyond ``max_routes`` are counted in.
OTHER = "(other)"
#: Upper bounds (seconds) of the latency bins: 0.5 ms and up, each sqrt(2) times the last,
#: to about 93 s; one more bin catches everything slower.
LATENCY_BOUNDS = tuple(0.0005 * 2 ** (i / 2) for i in range(36))
_REQUESTS, _4XX, _5XX, _IN, _OUT, _HIST = 0, 1, 2, 3, 4, 5
_SLOTS = _HIST + len(LATENCY_BOUNDS) + 1


def latency_bin(seconds: float) -> int:
    """The index of the first bin whose upper bound is at least ``seconds`` (O(1))."""
    if seconds <= LATENCY_BOUNDS[0]:
        return 0
    index = math.ceil(2 * math.log2(seconds / LATENCY_BOUNDS[0]) - 1e-9)
    return min(index, len(LATENCY_BOUNDS))


def percentile(hist: list[int], fraction: float) -> float | None:
    """The ``fraction`` quantile of a latency histogram, in seconds (None when empty)."""
    return percentiles(hist, (fraction,))[0]


def percentiles(hist: list[int], fractions: tuple[float, ...]) -> list[float | None]:
    """Quantiles (``fractions`` in ascending order) of a latency histogram, in seconds, in one
    pass; None for an empty histogram.

    Interpolated geometrically inside the bin a quantile falls in (linearly in the first
    bin); the open last bin answers its lower bound.
    """
    total = sum(hist)
    if not total:
        return [None] * len(fractions)
    out: list[float | None] = []
    seen = 0
    wanted = iter(fractions)
    fraction = next(wanted, None)
    for index, count in enumerate(hist):
        while fraction is not None and count and seen + count >= fraction * total:
            out.append(_within(index, (fraction * total - seen) / count))
            fraction = next(wanted, None)
        if fraction is None:
            return out
        seen += count
    out.extend(LATENCY_BOUNDS[-1] for _ in range(len(fractions) - len(out)))
    return out


def _within(index: int, share: float) -> float:
    if index >= len(LATENCY_BOUNDS):
        return LATENCY_BOUNDS[-1]
    upper = LATENCY_BOUNDS[index]
    if index == 0:
        return upper * share
    lower = LATENCY_BOUNDS[index - 1]
    return float(lower * (upper / lower) ** share)


class _Ring:
    """One route's buckets: ``epochs[i]`` says which bucket number ``data[i]`` holds."""

    __slots__ = ("data", "epochs", "last")

    def __init__(self, size: int) -> None:
        self.epochs = [-1] * size
        self.data: list[list[int] | None] = [None] * size
        self.last = -1

    def bucket(self, epoch: int) -> list[int]:
        slot = epoch % len(self.epochs)
        data = self.data[slot]
        if data is None or self.epochs[slot] != epoch:
            data = self.data[slot] = [0] * _SLOTS
            self.epochs[slot] = epoch
        self.last = max(self.last, epoch)
        return data

    def get(self, epoch: int) -> list[int] | None:
        slot = epoch % len(self.epochs)
        return self.data[slot] if self.epochs[slot] == epoch else None


class TimeSeries:
    """Per-route request counts, errors, bytes and latency in a bounded ring of buckets."""

    def __init__(self, bucket_seconds: float = 10.0, window_seconds: float = 900.0,
                 max_routes: int = 1000, clock: Callable[[], float] = time.time) -> None:
        if bucket_seconds <= 0 or window_seconds < bucket_seconds or max_routes < 1:
            raise ValueError("need bucket_seconds > 0, window_seconds >= bucket_seconds, "
                             "max_routes >= 1")
        self.bucket_seconds = bucket_seconds
        self.size = math.ceil(window_seconds / bucket_seconds)
        self.max_routes = max_routes
        self._clock = clock
        self._lock = threading.Lock()
        self._rings: dict[str, _Ring] = {}
        self._pruned_at = -1

    def record(self, route: str, status: int, seconds: float, bytes_in: int,
               bytes_out: int) -> None:
        epoch = int(self._clock() // self.bucket_seconds)
        index = _HIST + latency_bin(seconds)
        with self._lock:
            ring = self._rings.get(route)
            if ring is None:
                ring = self._new_ring(route, epoch)
            data = ring.bucket(epoch)
            data[_REQUESTS] += 1
            if 400 <= status < 500:
                data[_4XX] += 1
            elif status >= 500:
                data[_5XX] += 1
            data[_IN] += bytes_in
            data[_OUT] += bytes_out
            data[index] += 1

    def _new_ring(self, route: str, epoch: int) -> _Ring:
        if len(self._rings) >= self.max_routes and self._pruned_at != epoch:
            # at most once per bucket: forget routes with nothing in the window
            self._pruned_at = epoch
            self._rings = {r: g for r, g in self._rings.items() if epoch - g.last < self.size}
        if len(self._rings) >= self.max_routes and route != OTHER:
            ring = self._rings.get(OTHER)
            if ring is not None:
                return ring
            route = OTHER  # the one series allowed beyond max_routes
        ring = self._rings[route] = _Ring(self.size)
        return ring

    def routes(self) -> list[str]:
        with self._lock:
            return sorted(self._rings)

    def series(self, minutes: float = 15.0) -> dict[str, Any]:
        """The last ``minutes`` (at most the window) as JSON-ready lists, oldest first.

        Every route has one value per bucket in each list; rates are per second (the current,
        partly filled bucket is divided by the time elapsed in it), latencies in milliseconds
        and None for a bucket without requests.
        """
        now = self._clock()
        current = int(now // self.bucket_seconds)
        count = max(1, min(self.size, math.ceil(minutes * 60 / self.bucket_seconds)))
        epochs = range(current - count + 1, current + 1)
        elapsed = max(1.0, now - current * self.bucket_seconds)
        spans = [self.bucket_seconds] * (count - 1) + [min(elapsed, self.bucket_seconds)]
        with self._lock:
            rings = [(r, g) for r, g in self._rings.items() if g.last > current - count]
        buckets: dict[str, list[list[int] | None]] = {}
        for route, ring in rings:
            with self._lock:  # one route at a time: requests never wait for the whole table
                found = [ring.get(e) for e in epochs]
                buckets[route] = [list(b) if b else None for b in found]
        return {
            "bucket_seconds": self.bucket_seconds,
            "start": [e * self.bucket_seconds for e in epochs],
            "now": now,
            "routes": {route: _lists(data, spans) for route, data in sorted(buckets.items())},
        }


def _lists(buckets: list[list[int] | None], spans: list[float]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {k: [] for k in (
        "requests", "rps", "4xx", "5xx", "bytes_in", "bytes_out", "in_bps", "out_bps",
        "p50_ms", "p99_ms")}
    for data, span in zip(buckets, spans, strict=True):
        if data is None:
            for key in out:
                out[key].append(None if key.endswith("_ms") else 0)
            continue
        out["requests"].append(data[_REQUESTS])
        out["rps"].append(round(data[_REQUESTS] / span, 3))
        out["4xx"].append(data[_4XX])
        out["5xx"].append(data[_5XX])
        out["bytes_in"].append(data[_IN])
        out["bytes_out"].append(data[_OUT])
        out["in_bps"].append(round(data[_IN] / span, 1))
        out["out_bps"].append(round(data[_OUT] / span, 1))
        p50, p99 = percentiles(data[_HIST:], (0.5, 0.99))
        out["p50_ms"].append(None if p50 is None else round(p50 * 1000, 3))
        out["p99_ms"].append(None if p99 is None else round(p99 * 1000, 3))
    return out


class RouteMemory:
    """Routes that had connectors lately, and since when each connector instance is here.

    The registration handler reports every socket added and removed. A route is remembered
    for ``keep_seconds`` after it was last seen with a socket, an instance's first
    registration until it has had no socket for that long; beyond ``max_entries`` the
    longest-quiet ones are forgotten first (a tenth at a time).
    """

    def __init__(self, keep_seconds: float = 900.0, max_entries: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self.keep_seconds = keep_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._routes: dict[str, float] = {}  # route -> last seen with a socket
        self._instances: dict[tuple[str, str], list[float]] = {}  # -> [first, last seen]

    def seen(self, route: str, instance: str) -> None:
        """A socket of ``instance`` for ``route`` was added, or has just gone."""
        now = self._clock()
        with self._lock:
            self._routes[route] = now
            times = self._instances.get((route, instance))
            if times is None or now - times[1] > self.keep_seconds:
                self._instances[(route, instance)] = [now, now]
            else:
                times[1] = now
            if len(self._routes) > self.max_entries or len(self._instances) > self.max_entries:
                self._forget(now)

    def _forget(self, now: float) -> None:
        cutoff = now - self.keep_seconds
        keep = self.max_entries * 9 // 10  # room for the next ones: this runs once in a while
        routes = sorted(self._routes.items(), key=lambda kv: kv[1], reverse=True)
        self._routes = {r: t for r, t in routes[:keep] if t >= cutoff}
        instances = sorted(self._instances.items(), key=lambda kv: kv[1][1], reverse=True)
        self._instances = {k: t for k, t in instances[:keep] if t[1] >= cutoff}

    def routes(self) -> dict[str, float]:
        """``{route: last seen}`` for the routes seen within ``keep_seconds``."""
        now = self._clock()
        with self._lock:
            return {r: t for r, t in self._routes.items() if now - t <= self.keep_seconds}

    def since(self, route: str, instance: str) -> float | None:
        """When ``instance`` registered for ``route`` (its sockets churning since), or None."""
        with self._lock:
            times = self._instances.get((route, instance))
            return times[0] if times else None

