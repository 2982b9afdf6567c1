"""A connector's set of routers is live: found by DNS (a real dnslib server on a loopback port,
asked through dnspython) or by a callable, followed as routers come and go.

Three routers share one registration port on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (one DNS name,
three A records), as routers behind one name do.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support import wait_for
from support.dns_server import DnsServer

from crank_sync import Connector

NAME = "routers.test"
ADDRESSES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.stop()


@pytest.fixture
def routers(router_factory: Any) -> list[Any]:
    first = router_factory(host=ADDRESSES[0], connector_max_wait=1.0)
    return [first, *(router_factory(host=a, registration_port=first.registration_port,
                                    connector_max_wait=1.0)
                     for a in ADDRESSES[1:])]


@pytest.fixture
def connectors() -> Iterator[list[Connector]]:
    started: list[Connector] = []
    yield started
    assert all([c.stop(timeout=10) for c in reversed(started)])


def start(connectors: list[Connector], target: Any, **options: Any) -> Connector:
    conn = Connector(target=target.url, route="svc", router_refresh=0.2, sliding_window=1,
                     **options)
    connectors.append(conn.start())
    return conn


def registered(router: Any) -> bool:
    return router.idle_sockets("svc") >= 1


def states(conn: Connector) -> dict[str, str]:
    return {s["address"] or s["url"]: s["state"] for s in conn.status()}


def get(router: Any, path: str = "/svc/bytes/10") -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"http://{router.config.host}:{router.http_port}{path}", timeout=30)


def test_routers_found_by_dns_are_followed(dns: DnsServer, routers: list[Any], target: Any,
                                           connectors: list[Connector]) -> None:
    dns.set(NAME, ADDRESSES[:1])
    conn = start(connectors, target, router_dns=f"ws://{NAME}:{routers[0].registration_port}",
                 dns_server=dns.address)
    wait_for(lambda: registered(routers[0]), what="registered at the one router in DNS")
    wait_for(lambda: states(conn) == {"127.0.0.1": "registered"}, what="status() registered")
    assert not registered(routers[1]) and not registered(routers[2])

    dns.set(NAME, ADDRESSES)  # two routers added
    wait_for(lambda: all(registered(r) for r in routers), what="registered at all three")
    wait_for(lambda: states(conn) == dict.fromkeys(ADDRESSES, "registered"),
             what="all three registered in status()")
    for router in routers:
        assert get(router).status_code == 200

    dns.set(NAME, ADDRESSES[1:])  # one removed: deregistered there, the others kept
    wait_for(lambda: not registered(routers[0]), what="deregistered from the removed router")
    wait_for(lambda: set(states(conn)) == set(ADDRESSES[1:]), what="status() without it")
    assert get(routers[0]).status_code == 503  # the route is remembered a while, unserved
    assert all(get(r).status_code == 200 for r in routers[1:])


def test_a_dns_outage_keeps_the_last_routers(dns: DnsServer, routers: list[Any], target: Any,
                                             connectors: list[Connector],
                                             caplog: pytest.LogCaptureFixture) -> None:
    dns.set(NAME, ADDRESSES[:2])
    with caplog.at_level(logging.INFO, logger="crank_sync.connector.routers"):
        conn = start(connectors, target,
                     router_dns=f"ws://{NAME}:{routers[0].registration_port}",
                     dns_server=dns.address)
        wait_for(lambda: registered(routers[0]) and registered(routers[1]), what="registered")
        dns.failing = True
        asked = dns.queries
        wait_for(lambda: dns.queries >= asked + 6, what="several lookups during the outage")
        assert registered(routers[0]) and registered(routers[1])
        wait_for(lambda: states(conn) == dict.fromkeys(ADDRESSES[:2], "registered"),
                 what="both still registered in status()")
        outage = [r for r in caplog.records if "keeping the last known set" in r.getMessage()]
        assert len(outage) == 1, [r.getMessage() for r in caplog.records]
        dns.failing = False
        dns.set(NAME, ADDRESSES[1:2])
        wait_for(lambda: not registered(routers[0]), what="the set followed again")
        assert any("works again" in r.getMessage() for r in caplog.records)
    assert registered(routers[1])


def test_a_router_that_cannot_be_reached_holds_up_no_other(dns: DnsServer, routers: list[Any],
                                                           target: Any,
                                                           connectors: list[Connector]) -> None:
    routers[2].stop()  # its address stays in DNS, nothing listens there any more
    dns.set(NAME, ADDRESSES)
    conn = start(connectors, target, router_dns=f"ws://{NAME}:{routers[0].registration_port}",
                 dns_server=dns.address)
    wait_for(lambda: registered(routers[0]) and registered(routers[1]), what="the two up")
    wait_for(lambda: states(conn)["127.0.0.3"] == "unreachable", what="the third unreachable")
    assert get(routers[1]).status_code == 200


def test_a_router_source_callable_is_followed(routers: list[Any], target: Any,
                                              connectors: list[Connector]) -> None:
    urls = [f"ws://{ADDRESSES[0]}:{routers[0].registration_port}"]
    conn = start(connectors, target, router_source=lambda: list(urls))
    wait_for(lambda: registered(routers[0]), what="registered at the first")
    urls[:] = [f"ws://{ADDRESSES[1]}:{routers[1].registration_port}"]
    wait_for(lambda: registered(routers[1]) and not registered(routers[0]),
             what="moved to the second router")
    # the first router's link is listed (deregistering) until it is drained
    wait_for(lambda: [s["url"] for s in conn.status()] == urls, what="status() followed")


def test_a_request_in_flight_finishes_when_its_router_leaves_the_set(
        dns: DnsServer, routers: list[Any], target: Any, connectors: list[Connector]) -> None:
    dns.set(NAME, ADDRESSES[:2])
    start(connectors, target, router_dns=f"ws://{NAME}:{routers[0].registration_port}",
          dns_server=dns.address)
    wait_for(lambda: registered(routers[0]) and registered(routers[1]), what="registered")
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(resp=get(routers[0], "/svc/slow?seconds=30")),
                            name="test-slow-request")
    slow.start()
    try:
        wait_for(lambda: target.received_for("/svc/slow?seconds=30"), what="the slow request")
        dns.set(NAME, ADDRESSES[1:2])
        wait_for(lambda: not registered(routers[0]), what="deregistered from the first router")
        target.release.set()  # the slow request may finish now
        slow.join(30)
    finally:
        target.release.set()
    assert result["resp"].status_code == 200
    assert registered(routers[1])


def test_without_any_router_the_setting_is_named() -> None:
    with pytest.raises(ValueError, match="^routers: required: give a router URL"):
        Connector(target="http://127.0.0.1:1", route="svc")
    with pytest.raises(ValueError, match="^dns_server: 'nope' must be host:port"):
        Connector(target="http://127.0.0.1:1", route="svc", router_dns="ws://r.test:9070",
                  dns_server="nope")


def test_wss_routers_found_by_dns_are_checked_for_the_name(dns: DnsServer, router_factory: Any,
                                                           target: Any, tmp_path: Any,
                                                           connectors: list[Connector]) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(NAME)  # for the name only: dialled by address, checked for the name
    ca_file, cert_file, key_file = (str(tmp_path / f) for f in ("ca.pem", "c.pem", "k.pem"))
    ca.cert_pem.write_to_path(ca_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    tls = {"registration_tls_cert": cert_file, "registration_tls_key": key_file}
    first = router_factory(host=ADDRESSES[0], **tls)
    second = router_factory(host=ADDRESSES[1], registration_port=first.registration_port, **tls)
    dns.set(NAME, ADDRESSES[:2])
    conn = start(connectors, target, router_dns=f"wss://{NAME}:{first.registration_port}",
                 dns_server=dns.address, ca_file=ca_file)
    wait_for(lambda: registered(first) and registered(second), what="registered over wss")
    wait_for(lambda: states(conn) == dict.fromkeys(ADDRESSES[:2], "registered"),
             what="both registered in status()")
    assert get(second).status_code == 200


def test_one_dns_url_per_worker_port(dns: DnsServer, router_factory: Any, target: Any,
                                     connectors: list[Connector]) -> None:
    """Several router workers per host: one name, one URL per port."""
    workers = [router_factory(), router_factory()]
    dns.set(NAME, ["127.0.0.1"])
    conn = start(connectors, target, dns_server=dns.address,
                 router_dns=[f"ws://{NAME}:{w.registration_port}" for w in workers])
    wait_for(lambda: all(registered(w) for w in workers), what="registered at both workers")
    assert sorted(s["url"] for s in conn.status()) == sorted(
        f"ws://{NAME}:{w.registration_port}" for w in workers)
