"""A router listener that overrides every callback and does nothing: what listeners cost.

``python scripts/bench.py --router-arg=--plugin --router-arg=bench_listener:NoOp`` (run_router.py
finds this module next to it).
"""
from __future__ import annotations

from crank_sync import ProxyListener
from crank_sync.hooks import Headers, ProxyInfo


class NoOp(ProxyListener):
    """Every callback overridden, so the router calls each one on every request."""

    def on_before_proxy_to_target(self, info: ProxyInfo, headers: Headers) -> None:
        pass

    def on_failure_to_acquire_socket(self, info: ProxyInfo) -> None:
        pass

    def on_after_target_headers_received(self, info: ProxyInfo, status: int,
                                         headers: Headers) -> int | None:
        return None

    def on_before_responding_to_client(self, info: ProxyInfo) -> None:
        pass

    def on_request_body_chunk(self, info: ProxyInfo, chunk: bytes) -> None:
        pass

    def on_response_body_chunk(self, info: ProxyInfo, chunk: bytes) -> None:
        pass

    def on_complete(self, info: ProxyInfo) -> None:
        pass
