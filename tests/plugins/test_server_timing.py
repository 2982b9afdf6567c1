"""crank_sync/plugins/server_timing.py on its own, with a stand-in of the router's ProxyInfo."""
from __future__ import annotations

from types import SimpleNamespace

from crank_sync import Headers
from crank_sync.plugins import ServerTiming


def test_socket_connector_and_total_in_milliseconds_after_the_targets_own():
    timing = ServerTiming()
    headers = Headers([("Server-Timing", "db;dur=3"), ("Content-Type", "text/plain")])
    info = SimpleNamespace(socket_wait=0.00125, duration=0.01534, response_headers=None)
    assert timing.on_after_target_headers_received(info, 200, headers) is None
    info.duration, info.response_headers = 0.02, headers
    timing.on_before_responding_to_client(info)
    assert headers.get_all("Server-Timing") == [
        "db;dur=3", "socket;dur=1.2, connector;dur=14.1", "total;dur=20.0"]


def test_never_a_negative_duration():
    headers = Headers()
    info = SimpleNamespace(socket_wait=0.5, duration=0.4)
    ServerTiming().on_after_target_headers_received(info, 200, headers)
    assert headers["Server-Timing"] == "socket;dur=500.0, connector;dur=0.0"
