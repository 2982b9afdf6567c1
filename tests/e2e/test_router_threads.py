"""The router spends one thread per connector socket: the registration handler's thread reads
the websocket itself (no second reader thread per socket)."""
from __future__ import annotations

import threading

from support import wait_for


def _router_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("crank-router-"))


def test_each_idle_v1_socket_costs_one_router_thread(router, target, connector_factory):
    before = _router_threads()
    connector_factory(target, route="svc", sliding_window=4, protocols=("1.0",))
    wait_for(lambda: router.idle_sockets("svc") == 4, what="four idle v1 sockets")
    added = [name for name in _router_threads() if name not in before]
    assert len(added) == 4, added
    assert all(name.startswith("crank-router-registration-") for name in added), added
