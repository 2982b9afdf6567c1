"""Requests nobody waits for any more are given up, as mu-cranker-router gives them up."""
from __future__ import annotations

import socket

from support import LOOPBACK, single_protocols, wait_for


@single_protocols
def test_a_client_leaving_a_silent_long_poll_cancels_the_target_request(router, target,
                                                                        connector_factory):
    """The response has started, the target says nothing more: the connector must notice the
    router's close and end its request to the target (v1 and v3)."""
    connector_factory(target, route="svc")
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    try:
        sock.sendall(b"GET /svc/long-poll HTTP/1.1\r\nHost: a\r\n\r\n")
        seen = b""
        while b"data: first" not in seen:
            chunk = sock.recv(4096)
            assert chunk, "the router closed before the first event"
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    # the target waits up to 30 s for its peer; the connector must hang up long before
    wait_for(target.long_poll_abandoned.is_set, timeout=15,
             what="the connector to abandon the target's long poll")
