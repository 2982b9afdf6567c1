"""The request line the target sees is the one the client sent, byte for byte: our connector
does not let urllib3 re-encode it (urllib3 upper-cases ``%2f`` and percent-encodes ``|``)."""
from __future__ import annotations

import socket
from typing import Any

import pytest
from support import (
    LOOPBACK,
    ScriptedRouter,
    both_protocols,
    receive_until_closed,
    wait_for,
)

from crank_sync import Connector

TARGETS = [
    "/svc/bytes/1/a%2fb%7e;p=1?q=%2f&x=%41",
    "/svc/bytes/1/%e2%82%ac/x%20y/..z/.%2e-no-dot-segment?",
    "/svc/bytes/1/x:y@z!$&'()*+,=?a=b?c/d",
]


def _raw_get(router: Any, target: str) -> bytes:
    with socket.create_connection((LOOPBACK, router.http_port), timeout=20) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@both_protocols
@pytest.mark.parametrize("request_target", TARGETS)
def test_the_target_sees_the_clients_request_target(router, target, connector_factory,
                                                    request_target):
    connector_factory(target, route="svc")
    answer = _raw_get(router, request_target)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert target.received[-1].path == request_target


@pytest.mark.parametrize("protocol", ["1.0"])
def test_characters_another_router_lets_through_reach_the_target_unchanged(target, protocol):
    """A router that forwards ``|``, ``{`` or ``\\`` (crank_sync refuses them with 400): our
    connector still replays the request line exactly."""
    raw = "/svc/bytes/1/a|b{c}\\d^e`f?q=|x"

    def script(ws: Any, sock: socket.socket) -> None:
        ws.send(f"GET {raw} HTTP/1.1\nHost:scripted\n\n_2")
        receive_until_closed(ws)

    router = ScriptedRouter(script, name="scripted-router-raw-target")
    conn = Connector(target=target.url, route="svc", protocols=(protocol,), routers=[router.url])
    conn.start()
    try:
        wait_for(router.done.is_set, what="the scripted exchange")
    finally:
        assert conn.stop(timeout=5) is True
        router.stop()
    assert [r.path for r in target.received] == [raw]
