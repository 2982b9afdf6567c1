"""Token buckets: the rate limits of one router, kept in its memory.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; a request takes one,
and a request that finds less than one is refused with the seconds until one is there (its
``Retry-After``). Buckets are created full on first use and forgotten once they would be full
again, so a router that meets many routes or clients keeps only the busy ones; above
``max_keys`` the least recently used go too (they restart full, which can only let a request
more through, never fewer).

The clock is injected (``clock``, default :func:`time.monotonic`), so the arithmetic is tested
without waiting.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

#: Buckets one router keeps at most (each some 200 bytes).
MAX_KEYS = 100_000
#: Every this many checks, buckets that are full again are dropped.
_SWEEP_EVERY = 1024
_EPSILON = 1e-9


def take(tokens: float, stamp: float, now: float, rate: float,
         burst: float) -> tuple[float, float]:
    """One request against a bucket that held ``tokens`` at ``stamp``: the tokens left after
    it, and the seconds to wait (0.0: the request may go; the tokens are then one less)."""
    if now > stamp:
        tokens = min(float(burst), tokens + (now - stamp) * rate)
    if tokens >= 1.0 - _EPSILON:  # a token short by rounding only is a token
        return max(0.0, tokens - 1.0), 0.0
    return tokens, (1.0 - tokens) / rate


class LocalBuckets:
    """Token buckets by key, shared by the threads of one router."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        #: key -> [tokens, stamp, seconds a bucket takes to fill from empty]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._checks = 0

    def check(self, key: str, rate: float, burst: int) -> float:
        """Take a token from ``key``'s bucket: 0.0 if the request may go, else the seconds
        until it could."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [float(burst), now, burst / rate]
            else:
                self._buckets.move_to_end(key)
            bucket[0], wait = take(bucket[0], bucket[1], now, rate, burst)
            bucket[1] = max(now, bucket[1])
            self._checks += 1
            if self._checks % _SWEEP_EVERY == 0:
                self._sweep(now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)  # the least recently used
            return wait

    def _sweep(self, now: float) -> None:
        """Drop the buckets that are full again."""
        full = [k for k, (_, stamp, fill) in self._buckets.items() if now - stamp >= fill]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
