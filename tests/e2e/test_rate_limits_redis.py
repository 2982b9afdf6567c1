"""Rate limits shared through Redis (``rate_limit_store``): two routers hold one limit
together; a Redis that stops, or stalls, mid-test never leaves a request unanswered (the
router counts alone meanwhile and says so once), and it is used again once it is back.

A real ``redis-server`` (Debian's package; .ci/run installs it) runs on a free loopback port
without persistence, one per test, stopped in teardown. Skipped only where it, or the redis
client package, is not installed."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from support import LOOPBACK, client_url, wait_for

redis = pytest.importorskip("redis", reason="the redis package is not installed: "
                            "pip install 'crank_sync[redis]'")

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
pytestmark = pytest.mark.skipif(REDIS_SERVER is None,
                                reason="redis-server is not installed: apt-get install "
                                       "redis-server")
STORE_LOG = "crank_sync.router.redis_buckets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1:``port``, without persistence."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1,
                             socket_connect_timeout=1)
        try:
            wait_for(lambda: self._pings(client), what=f"redis-server on port {self.port}")
        finally:
            client.close()
        return self

    def _pings(self, client: Any) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def client(self) -> Any:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # a paused server could not exit
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def status(session: Any, router: Any, path: str = "/svc/bytes/1") -> int:
    return int(session.get(client_url(router, path), timeout=10).status_code)


def store_lines(caplog: Any, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == STORE_LOG and text in r.getMessage()]


def test_two_routers_hold_one_limit(router_factory, target, connector_factory, session,
                                    redis_server):
    options = dict(rate_limit="1/h", rate_burst=6, rate_limit_store=redis_server.url)
    first, second = router_factory(**options), router_factory(**options)
    connector_factory(target, route="svc", routers=[first, second])
    answers = [status(session, router) for _ in range(8) for router in (first, second)]
    assert answers.count(200) == 6, answers  # the sum over both routers stays the limit
    assert answers.count(429) == 10, answers
    assert answers[:6] == [200] * 6  # and both served their share until it was used up
    assert len(target.received_for("/svc/")) == 6
    with redis_server.client() as client:
        assert client.exists("crank_sync:rate:route:svc")
        assert 0 < client.pttl("crank_sync:rate:route:svc") <= (6 * 3600 + 1) * 1000


def test_redis_stopped_mid_test_the_router_counts_alone_then_shares_again(
        router_factory, target, connector_factory, session, redis_server, caplog):
    caplog.set_level(logging.INFO, logger=STORE_LOG)
    router = router_factory(rate_limit="1/h", rate_burst=3, rate_limit_store=redis_server.url,
                            rate_limit_store_retry=0.2)
    connector_factory(target, route="svc", routers=[router])
    assert [status(session, router) for _ in range(2)] == [200, 200]
    redis_server.stop()
    # every request is answered: from the router's own buckets (full: 3), then 429
    assert [status(session, router) for _ in range(5)] == [200, 200, 200, 429, 429]
    failed = store_lines(caplog, "failed")
    assert len(failed) == 1, failed
    assert "counting in this router's memory" in failed[0]
    assert redis_server.url.removeprefix("redis://") in failed[0]
    # Redis back (empty: it keeps nothing on disk): a request after the retry interval uses
    # it again, and that is said once
    redis_server.start()
    wait_for(lambda: status(session, router) == 200 and store_lines(caplog, "is back"),
             what="the router using Redis again")
    assert len(store_lines(caplog, "is back")) == 1
    assert len(store_lines(caplog, "failed")) == 1
    with redis_server.client() as client:
        assert client.exists("crank_sync:rate:route:svc")


def test_a_stalled_redis_does_not_hold_requests(router_factory, target, connector_factory,
                                                session, redis_server, caplog):
    caplog.set_level(logging.INFO, logger=STORE_LOG)
    router = router_factory(rate_limit="1/h", rate_burst=2, rate_limit_store=redis_server.url,
                            rate_limit_store_timeout=0.05, rate_limit_store_retry=600)
    connector_factory(target, route="svc", routers=[router])
    assert status(session, router) == 200
    redis_server.pause()  # accepts nothing, answers nothing: only the timeout ends a wait
    try:
        # answered from the local buckets (full: 2), and Redis is not asked again for each
        assert [status(session, router) for _ in range(4)] == [200, 200, 429, 429]
        assert len(store_lines(caplog, "failed")) == 1
        assert "TimeoutError" in store_lines(caplog, "failed")[0]
    finally:
        redis_server.resume()
