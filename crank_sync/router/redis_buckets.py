"""Token buckets in Redis, so several routers hold one limit together.

Each check is one Lua script, run atomically by Redis (EVALSHA, falling back to EVAL when
Redis does not know the script yet: redis-py's :class:`~redis.commands.core.Script`). The
script reads Redis's own clock, so routers whose clocks disagree still share one bucket
fairly, and sets an expiry so idle buckets vanish.

A Redis that is down or slow never holds a request up for long: connect and read time out
after ``timeout`` seconds (no retries), and on a failure the router counts in its own
buckets (:class:`~crank_sync.router.ratelimit.LocalBuckets`) for ``retry`` seconds before
one request tries Redis again; the others go on counting locally meanwhile. The change is
logged once each way (lost, back).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..config import redact_url
from .ratelimit import LocalBuckets

log = logging.getLogger(__name__)

#: KEYS[1]: the bucket; ARGV: rate (tokens a second), burst. Returns the seconds to wait, as
#: text ("0" when the request may go): a Lua number would come back truncated to an integer.
TOKEN_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(held[1])
local stamp = tonumber(held[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local wait = 0
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

#: Prefix of every key the router writes.
KEY_PREFIX = "crank_sync:rate:"


class RedisBuckets:
    """Buckets in the Redis at ``url``; ``local`` counts while Redis cannot be reached."""

    def __init__(self, url: str, timeout: float, retry: float, local: LocalBuckets,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.url = redact_url(url)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry_on_timeout=False, retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._script: Any = self._client.register_script(TOKEN_BUCKET_LUA)
        self._local = local
        self._retry = retry
        self._clock = clock
        self._lock = threading.Lock()
        #: Redis failed: counted locally until ``_next_try`` (monotonic seconds).
        self.down = False
        self._next_try = 0.0

    def check(self, key: str, rate: float, burst: int) -> float:
        """As :meth:`LocalBuckets.check`, in Redis while it answers."""
        if not self._may_try():
            return self._local.check(key, rate, burst)
        try:
            wait = float(self._script(keys=[KEY_PREFIX + key], args=[repr(rate), burst]))
        except self._errors as err:
            self._failed(err)
            return self._local.check(key, rate, burst)
        if self.down:
            self._back()
        return wait

    def _may_try(self) -> bool:
        """Redis is up, or it is time for one request (this one) to try it again."""
        if not self.down:
            return True
        with self._lock:
            now = self._clock()
            if now < self._next_try:
                return False
            self._next_try = now + self._retry  # the others keep counting locally meanwhile
            return True

    def _failed(self, err: BaseException) -> None:
        with self._lock:
            was_down, self.down = self.down, True
            self._next_try = self._clock() + self._retry
        if not was_down:
            log.warning("rate-limit store %s failed (%s: %s): counting in this router's "
                        "memory, trying it again every %.0fs", self.url, type(err).__name__,
                        err, self._retry)

    def _back(self) -> None:
        with self._lock:
            was_down, self.down = self.down, False
        if was_down:
            log.info("rate-limit store %s is back: limits are shared again", self.url)

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            pass
