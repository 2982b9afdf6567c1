"""What every handler of one router shares: its configuration, the socket registry, the
metrics, the registration guard, the deadline watcher and the connections in use."""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..config import RouterConfig
from ..protocol.client_address import TrustedProxies
from .deadlines import Deadlines
from .limiter import limiter_for
from .listening import RouterHooks
from .metrics import RouterMetrics
from .pool import SocketRegistry
from .security import RegistrationGuard


class RouterCore:
    """What the handlers share: configuration, the registry, connections in use."""

    def __init__(self, config: RouterConfig, listeners: Iterable[object] = ()) -> None:
        self.config = config
        self.registry = SocketRegistry(grace=config.route_keep_time,
                                       resolver=config.route_resolver)
        self.busy_connections: set[Any] = set()
        self.by_name = config.via_name
        self.metrics = RouterMetrics(self.registry)
        #: Rate limits and concurrency caps, the first listener (None: no limit set).
        self.limiter = limiter_for(config, self.metrics)
        self.hooks = RouterHooks([self.limiter, *listeners] if self.limiter else listeners)
        #: Whose forwarding header names the client (None: the socket's address is).
        self.trusted_proxies = (TrustedProxies(config.trusted_proxies,
                                               config.trusted_proxy_header)
                                if config.trusted_proxies else None)
        self.guard = RegistrationGuard(config)
        self.deadlines: Deadlines = None  # type: ignore[assignment]  # set by Router.start
        self.started_at = time.monotonic()
        #: Set when the router stops: /health answers 503, keep-alive connections close.
        self.draining = False
        #: Websockets open through the tunnel (router/tunnel.py): closed with 1001 on stop.
        self.websockets: set[Any] = set()
