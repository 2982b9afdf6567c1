"""A response cut short is logged and counted as aborted, never as a plain 200: the access line
says ``outcome=aborted:<reason>`` and ``/metrics`` counts it in
``crank_requests_aborted_total{route, reason}`` and under status class ``aborted``."""

from __future__ import annotations

import gc
import http.client
import logging
import socket
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import LOOPBACK, single_protocols, wait_for


def metric(router: Any, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` on the router's /metrics (0 when absent)."""
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{router.registration_port}/metrics", timeout=10)
    assert resp.status_code == 200
    found = [sample.value for family in text_string_to_metric_families(resp.text)
             for sample in family.samples
             if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def access_lines(caplog: Any, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "crank_sync.access"
            and all(w in r.getMessage() for w in words)]


def assert_counted_as_aborted(router: Any, caplog: Any, route: str, reason: str) -> None:
    line = wait_for(lambda: access_lines(caplog, f"route={route}", f"outcome=aborted:{reason}"),
                    what="the access line of the aborted request")
    assert len(line) == 1 and "status=200" in line[0], line
    assert metric(router, "crank_requests_aborted_total", route=route, reason=reason) == 1
    assert metric(router, "crank_requests_total", route=route, status_class="aborted") == 1
    assert metric(router, "crank_requests_total", route=route, status_class="2xx") == 0


def start_response(port: int, path: str) -> tuple[socket.socket, http.client.HTTPResponse]:
    sock = socket.create_connection((LOOPBACK, port), timeout=20)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    resp = http.client.HTTPResponse(sock, method="GET")
    resp.begin()
    assert resp.status == 200
    return sock, resp


@single_protocols
def test_client_gone_mid_body_is_aborted(router, target, connector_factory, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    connector_factory(target, route="svc")
    sock, resp = start_response(router.http_port, "/svc/endless")
    try:
        assert resp.read(1000)
    finally:
        resp.close()
        sock.close()
    assert_counted_as_aborted(router, caplog, "svc", "client_gone")
    assert metric(router, "crank_errors_total", kind="ClientGone") == 1


@single_protocols
def test_connector_lost_mid_body_is_aborted(router, target, connector_factory, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    connector_factory(target, route="svc")
    sock, resp = start_response(router.http_port, "/svc/die-mid-body")
    try:
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        sock.close()
    assert_counted_as_aborted(router, caplog, "svc", "connector_lost")


@pytest.mark.parametrize("router", [{"idle_timeout": 1.0}], indirect=True)
def test_idle_timeout_mid_body_is_aborted(router, fake_connector_factory, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    fake = fake_connector_factory(router, "stall")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    try:
        sock.sendall(b"GET /stall/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        fake.recv_request()
        fake.send_head(200, "OK", (("Content-Length", "10000"),))
        fake.send_body(b"p" * 100)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        sock.close()
        fake.abort()
    assert_counted_as_aborted(router, caplog, "stall", "idle_timeout")


@single_protocols
def test_complete_response_is_ok(router, target, connector_factory, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    connector_factory(target, route="svc")
    with requests.Session() as s:
        s.trust_env = False
        assert s.get(f"http://{LOOPBACK}:{router.http_port}/svc/bytes/10", timeout=10).ok
    wait_for(lambda: access_lines(caplog, "route=svc", "status=200", "outcome=ok"),
             what="an access line with outcome=ok")
    assert metric(router, "crank_requests_total", route="svc", status_class="2xx") == 1
    assert metric(router, "crank_requests_aborted_total", route="svc", reason="client_gone") == 0


@single_protocols
def test_aborted_downloads_leave_no_reference_cycles(router, target, connector_factory):
    """A client leaving mid-body makes the connector's reader fail to write; that error is
    raised on the client's thread. It must not tie the socket, the handler and the reader's
    buffers into a cycle: with the cyclic collector off, they have to be freed by reference
    counting alone, or aborted downloads pile up garbage until a full collection."""
    connector_factory(target, route="svc")
    aborts = 5
    gc.collect()
    gc.disable()
    try:
        for _ in range(aborts):
            sock, resp = start_response(router.http_port, "/svc/endless")
            try:
                assert resp.read(1000)
            finally:
                resp.close()
                sock.close()  # unread bytes in the receive buffer: the router gets a reset
        wait_for(lambda: metric(router, "crank_requests_aborted_total", route="svc",
                                reason="client_gone") == aborts,
                 what="every aborted request counted")
        wait_for(lambda: not router._core.busy_connections, what="no request in flight")
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = sorted({type(o).__name__ for o in gc.garbage
                       if type(o).__module__.startswith("crank_sync.router")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
