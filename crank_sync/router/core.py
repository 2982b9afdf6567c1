"""What every handler of one router shares: its configuration, the socket registry, the
metrics, the registration guard, the deadline watcher and the connections in use."""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..config import RouterConfig
from .deadlines import Deadlines
from .listening import RouterHooks
from .metrics import RouterMetrics
from .pool import SocketRegistry
from .security import RegistrationGuard


class RouterCore:
    """What the handlers share: configuration, the registry, connections in use."""

    def __init__(self, config: RouterConfig, listeners: Iterable[object] = ()) -> None:
        self.config = config
        self.hooks = RouterHooks(listeners)
        self.registry = SocketRegistry(grace=config.route_keep_time,
                                       resolver=config.route_resolver)
        self.busy_connections: set[Any] = set()
        self.by_name = config.via_name
        self.metrics = RouterMetrics(self.registry)
        self.guard = RegistrationGuard(config)
        self.deadlines: Deadlines = None  # type: ignore[assignment]  # set by Router.start
        self.started_at = time.monotonic()
        #: Set when the router stops: /health answers 503, keep-alive connections close.
        self.draining = False
