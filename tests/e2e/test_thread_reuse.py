"""Threads outlive connections: a router thread serves one client connection after another,
and a connector thread one v1 socket after another, instead of a new thread for each."""
from __future__ import annotations

import http.client
import threading

from support import LOOPBACK, deterministic_bytes, wait_for


def _names(prefix: str) -> set[str]:
    """Names of the live worker threads ``{prefix}N``."""
    return {t.name for t in threading.enumerate()
            if t.name.startswith(prefix) and t.name[len(prefix):].isdigit()}


def _get_and_close(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        assert resp.status == 200
        return resp.read()
    finally:
        conn.close()


def test_one_router_thread_serves_connection_after_connection(router, target, connector_factory):
    connector_factory(target, route="svc")
    client_threads = router._servers[0].workers
    seen: set[str] = set()
    for i in range(10):
        body = _get_and_close(router.http_port, f"/svc/bytes/{100 + i}?seed={i}")
        assert body == deterministic_bytes(100 + i, i)
        # the connection's thread parks before the next connection arrives
        wait_for(lambda: client_threads.idle >= 1, what="the client thread parked")
        seen |= _names("crank-router-client-")
    assert len(seen) == 1, sorted(seen)


def test_v1_connector_threads_serve_socket_after_socket(router, target, connector_factory):
    conn = connector_factory(target, route="svc", sliding_window=2, protocols=("1.0",))
    seen = _names("crank-connector-socket-")
    assert len(seen) == 2, sorted(seen)
    for i in range(10):
        body = _get_and_close(router.http_port, f"/svc/bytes/{200 + i}?seed={i}")
        assert body == deterministic_bytes(200 + i, i)
        # the socket that served the request ends; its thread parks for the next replacement
        wait_for(lambda: conn._threads.idle >= 1 and router.idle_sockets("svc") == 2,
                 what="window restored and a connector thread parked")
        seen |= _names("crank-connector-socket-")
    # the first request's replacement needed a third thread; every later one reused a thread
    assert len(seen) == 3, sorted(seen)
