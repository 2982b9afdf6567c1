"""Fixtures for the Flask and Django tests: a router, clients, and ways to reach the app.

The generic fixtures (``router``, the thread-leak check) come from tests/conftest.py, the helpers
(``wait_for``, ``LOOPBACK``) from tests/support.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from support import LOOPBACK, wait_for


@pytest.fixture(params=[("1.0",), ("3.0",)], ids=["v1", "v3"])
def protocols(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return request.param


@pytest.fixture
def client() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


@pytest.fixture
def connectors(router: Any) -> Iterator[Callable[..., Any]]:
    """``connect(target, route)``: a connector to ``router``, registered; stopped at teardown."""
    from crank_sync import Connector

    started: list[Any] = []

    def connect(target: Any, route: str, protocols: tuple[str, ...]) -> Any:
        conn = Connector(target=target, route=route,
                         routers=[f"ws://{LOOPBACK}:{router.registration_port}"],
                         protocols=protocols)
        started.append(conn)
        conn.start()
        wait_for(lambda: router.idle_sockets(route) >= 1, what=f"connector for {route!r}")
        return conn

    yield connect
    assert all([conn.stop(timeout=10) for conn in started]), "connector stop() timed out"


class LocalServer:
    """A WSGI app on werkzeug's threaded dev server, 127.0.0.1 port 0: the HTTP target."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server(LOOPBACK, 0, app, threaded=True)
        self.url = f"http://{LOOPBACK}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="test-werkzeug-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def local_server() -> Iterator[Callable[[Any], LocalServer]]:
    servers: list[LocalServer] = []

    def serve(app: Any) -> LocalServer:
        servers.append(LocalServer(app))
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()
