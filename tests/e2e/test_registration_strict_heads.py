"""The registration port reads request heads by the client port's rules (protocol/http_head.py):
a head that two parsers could read differently (a bare CR, obsolete folding, two Host headers,
a control character) gets 400 and a log line, and registers nothing; the port goes on serving.

The standard library's header parser, which the registration handler also runs, splits a line
at a bare CR: without the strict check, ``X-A: a\\rUpgrade: websocket`` would be two headers to
the router and one to a proxy in front of it.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import socket

import pytest
import requests
from support import LOOPBACK

WS_HEADERS = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"CrankerProtocol: 1.0\r\n"
              b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n")
REGISTER = b"GET /register/?connectorInstanceID=rogue&route=rogue HTTP/1.1\r\n"


def exchange(port: int, head: bytes) -> tuple[int, bytes]:
    """Send ``head`` on a new connection to the registration port: the status and the body."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(head)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read() if resp.status != 101 else b""


def registered_routes(router) -> set[str]:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{router.registration_port}/health/connectors",
                     timeout=10)
        assert resp.status_code == 200
        return set(resp.json()["services"])


HOSTILE = [
    pytest.param(REGISTER + b"Host: router\r\nX-A: a\r" + WS_HEADERS + b"\r\n",
                 b"bare CR", id="bare-cr-hides-the-upgrade"),
    pytest.param(REGISTER + b"Host: router\r\n" + WS_HEADERS + b"X-A: a\r\n b\r\n\r\n",
                 b"obsolete line folding", id="obs-fold"),
    pytest.param(REGISTER + b"Host: router\r\nHost: other\r\n" + WS_HEADERS + b"\r\n",
                 b"2 Host headers", id="two-hosts"),
    pytest.param(REGISTER + WS_HEADERS + b"\r\n", b"no Host header", id="no-host"),
    pytest.param(REGISTER + b"Host: router\r\nX-A: a\x00b\r\n" + WS_HEADERS + b"\r\n",
                 b"control character", id="nul-in-value"),
    pytest.param(REGISTER + b"Host: router\r\nX A: b\r\n" + WS_HEADERS + b"\r\n",
                 b"invalid header name", id="space-in-name"),
    pytest.param(b"GET /health HTTP/1.1\r\nHost: router\r\nX-A: a\rX-B: b\r\n\r\n",
                 b"bare CR", id="admin-bare-cr"),
]


@pytest.mark.parametrize(("head", "reason"), HOSTILE)
def test_a_malformed_registration_head_is_refused(router, head, reason, caplog):
    caplog.set_level(logging.WARNING, logger="crank_sync.router.registration")
    status, body = exchange(router.registration_port, head)
    assert status == 400
    assert reason in body
    assert any("malformed request head" in r.getMessage() for r in caplog.records)
    assert "rogue" not in registered_routes(router)
    # the port goes on serving well-formed heads
    assert exchange(router.registration_port,
                    b"GET /health HTTP/1.1\r\nHost: router\r\n\r\n")[0] == 200


def test_a_well_formed_upgrade_with_bare_lf_lines_is_accepted(router):
    """RFC 9112 lets a line end in a bare LF; the strict rules keep that."""
    head = (REGISTER + b"Host: router\r\n" + WS_HEADERS + b"\r\n").replace(b"\r\n", b"\n")
    status, _ = exchange(router.registration_port, head)
    assert status == 101
