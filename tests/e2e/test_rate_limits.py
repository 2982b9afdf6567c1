"""Rate limits end to end: a real router, connector and target on 127.0.0.1. A request over
the limit gets 429 with Retry-After and never reaches the target; limits by route, by client
(the socket's address, or the one a trusted proxy forwarded; a spoofed header from anyone else
changes nothing); the counts in /metrics and /api/stats.

The rates are per hour, so no token comes back while a test runs: what passes is the burst,
exactly, whatever the machine's speed."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pytest
from support import admin_url, client_url, wait_for

from crank_sync import ProxyListener


def get(session: Any, router: Any, path: str, **headers: str) -> Any:
    return session.get(client_url(router, path), headers=headers, timeout=10)


def statuses(session: Any, router: Any, path: str, n: int, **headers: str) -> list[int]:
    return [get(session, router, path, **headers).status_code for _ in range(n)]


def seen(target: Any, prefix: str) -> int:
    return len(target.received_for(prefix))


def access_lines(caplog: Any, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "crank_sync.access"
            and all(w in r.getMessage() for w in words)]


@pytest.mark.parametrize("router", [{"rate_limit": "1/h", "rate_burst": 3}], indirect=True)
def test_over_the_route_limit_429_and_the_target_sees_nothing(router, target, connector_factory,
                                                               session):
    connector_factory(target, route="svc")
    connector_factory(target, route="other")
    assert statuses(session, router, "/svc/bytes/10", 3) == [200, 200, 200]
    resp = get(session, router, "/svc/bytes/10?over=1")
    assert resp.status_code == 429
    assert re.fullmatch(r"[1-9][0-9]*", resp.headers["Retry-After"])
    assert 3500 <= int(resp.headers["Retry-After"]) <= 3600  # a token an hour
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "rate limit" in resp.text and "svc" in resp.text
    assert resp.headers["X-Request-Id"]
    assert seen(target, "/svc/bytes/10?over") == 0
    assert seen(target, "/svc/") == 3
    # by route: another route has a bucket of its own
    assert statuses(session, router, "/other/bytes/1", 3) == [200, 200, 200]
    assert get(session, router, "/other/bytes/1").status_code == 429
    assert seen(target, "/other/") == 3


@pytest.mark.parametrize("router", [{"routes": {"limited": {"rate": "1/h", "burst": 1}}}],
                         indirect=True)
def test_a_route_table_limits_its_route_only(router, target, connector_factory, session):
    connector_factory(target, route="limited")
    connector_factory(target, route="free")
    assert statuses(session, router, "/limited/bytes/1", 3) == [200, 429, 429]
    assert statuses(session, router, "/free/bytes/1", 10) == [200] * 10
    assert seen(target, "/limited/") == 1


@pytest.mark.parametrize("router", [{"rate_limit": "1/h", "rate_burst": 2, "rate_by": "client"}],
                         indirect=True)
def test_by_client_without_trusted_proxies_forwarding_headers_are_ignored(router, target,
                                                                           connector_factory,
                                                                           session):
    connector_factory(target, route="svc")
    # every request comes from 127.0.0.1, whatever it claims: one bucket
    assert get(session, router, "/svc/bytes/1", **{"X-Forwarded-For": "198.51.100.1"}
               ).status_code == 200
    assert get(session, router, "/svc/bytes/1", Forwarded="for=198.51.100.2").status_code == 200
    spoofed = get(session, router, "/svc/bytes/1", **{"X-Forwarded-For": "198.51.100.3"})
    assert spoofed.status_code == 429
    assert seen(target, "/svc/") == 2


@pytest.mark.parametrize("router", [{"rate_limit": "1/h", "rate_burst": 2, "rate_by": "client",
                                     "trusted_proxies": ("127.0.0.0/8", "::1")}], indirect=True)
def test_by_client_behind_a_trusted_proxy(router, target, connector_factory, session, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync.access")
    connector_factory(target, route="svc")
    alice = {"X-Forwarded-For": "203.0.113.5"}
    # the left-most entry is whatever the client sent the proxy: not trusted, not used
    alice_forged = {"X-Forwarded-For": "192.0.2.99, 203.0.113.5"}
    bob = {"X-Forwarded-For": "2001:db8::b0b, 127.0.0.1"}  # two trusted hops: bob is behind
    assert get(session, router, "/svc/bytes/1", **alice).status_code == 200
    assert get(session, router, "/svc/bytes/1", **alice_forged).status_code == 200
    assert get(session, router, "/svc/bytes/1?alice=3", **alice).status_code == 429
    assert statuses(session, router, "/svc/bytes/1", 2, **bob) == [200, 200]
    assert get(session, router, "/svc/bytes/1?bob=3", **bob).status_code == 429
    # no header: the proxy's own address is the client
    assert statuses(session, router, "/svc/bytes/1", 3) == [200, 200, 429]
    assert seen(target, "/svc/bytes/1?") == 0
    wait_for(lambda: access_lines(caplog, " 203.0.113.5 ", "status=429"),
             what="the access line naming the forwarded client")
    assert access_lines(caplog, " 2001:db8::b0b ", "status=200")


@pytest.mark.parametrize("router", [{"rate_limit": "1/h", "rate_burst": 1, "rate_by": "client",
                                     "trusted_proxies": ("127.0.0.1",),
                                     "trusted_proxy_header": "forwarded"}], indirect=True)
def test_by_client_from_the_forwarded_header(router, target, connector_factory, session):
    connector_factory(target, route="svc")
    first = {"Forwarded": 'for="[2001:db8::1]:4711";proto=https'}
    assert get(session, router, "/svc/bytes/1", **first).status_code == 200
    assert get(session, router, "/svc/bytes/1", **first).status_code == 429
    # X-Forwarded-For is not the header this proxy writes: ignored, the proxy is the client
    assert get(session, router, "/svc/bytes/1", **{"X-Forwarded-For": "192.0.2.7"}
               ).status_code == 200
    assert get(session, router, "/svc/bytes/1", **{"X-Forwarded-For": "192.0.2.8"}
               ).status_code == 429
    # an obfuscated hop ends the walk at the proxy: the proxy's bucket, already empty
    assert get(session, router, "/svc/bytes/1", Forwarded="for=_hidden").status_code == 429


class Recorder(ProxyListener):
    def __init__(self) -> None:
        self.before: list[str] = []
        self.completed: list[int | None] = []
        self.lock = threading.Lock()

    def on_before_proxy_to_target(self, info, headers):
        with self.lock:
            self.before.append(info.target)

    def on_complete(self, info):
        with self.lock:
            self.completed.append(info.status)


def test_the_limiter_comes_before_the_router_s_listeners(router_factory, target,
                                                         connector_factory, session):
    recorder = Recorder()
    router = router_factory(rate_limit="1/h", rate_burst=1, listeners=[recorder])
    connector_factory(target, route="svc", routers=[router])
    assert statuses(session, router, "/svc/bytes/1", 2) == [200, 429]
    wait_for(lambda: len(recorder.completed) == 2, what="on_complete for both requests")
    assert recorder.before == ["/svc/bytes/1"]  # the refused one met no later listener
    assert sorted(recorder.completed) == [200, 429]


@pytest.mark.parametrize("router", [{"rate_limit": "1/h", "rate_burst": 1}], indirect=True)
def test_refusals_are_counted_in_metrics_and_stats(router, target, connector_factory, session):
    connector_factory(target, route="svc")
    assert statuses(session, router, "/svc/bytes/1", 3) == [200, 429, 429]
    metrics = session.get(admin_url(router, "/metrics"), timeout=10).text
    assert 'crank_requests_rejected_total{reason="rate_limit",route="svc"} 2.0' in metrics
    stats = session.get(admin_url(router, "/api/stats"), timeout=10).json()
    assert stats["rejected"] == {"svc": {"rate_limit": 2}}
    assert stats["rejected_total"] == 2
    assert stats["limits"] == {}


def test_without_limits_nothing_is_refused_or_counted(router, target, connector_factory,
                                                      session):
    connector_factory(target, route="svc")
    assert statuses(session, router, "/svc/bytes/1", 20) == [200] * 20
    metrics = session.get(admin_url(router, "/metrics"), timeout=10).text
    assert "crank_requests_rejected_total{" not in metrics
    stats = session.get(admin_url(router, "/api/stats"), timeout=10).json()
    assert stats["rejected"] == {} and stats["rejected_total"] == 0


@pytest.mark.parametrize("router", [{"rate_limit": "1/h", "rate_burst": 1}], indirect=True)
def test_made_up_routes_add_no_metric_series(router, target, connector_factory, session):
    """With a listener in place (here the limiter) a request names the route it looks for; the
    metrics label only the router's own routes, so a scan of made-up paths adds no series and
    no keys to the dashboard's tables: it counts under ``(none)``."""
    connector_factory(target, route="svc")
    scan = [get(session, router, f"/scan{i}/x").status_code for i in range(30)]
    assert scan.count(404) + scan.count(429) == 30 and 404 in scan
    assert statuses(session, router, "/svc/bytes/1", 2) == [200, 429]
    metrics = session.get(admin_url(router, "/metrics"), timeout=10).text
    assert "scan" not in metrics
    assert 'crank_requests_total{route="svc",status_class="2xx"} 1.0' in metrics
    assert 'crank_requests_rejected_total{reason="rate_limit",route="svc"} 1.0' in metrics
    unrouted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith('crank_requests_total{route="(none)"'))
    assert unrouted == 30
    stats = session.get(admin_url(router, "/api/stats"), timeout=10).json()
    assert not any("scan" in key for key in stats["rejected"])
    assert "scan" not in str(stats)
