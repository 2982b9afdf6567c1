"""A connector's registered websocket, as the router's pool holds it."""
from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocol.limits import DEFAULT_MESSAGE_LIMIT
from .websocket import RouterWebSocket

if TYPE_CHECKING:
    from .v3_socket import V3Session

_BOOT = uuid.uuid4().hex[:8]
_socket_ids = itertools.count(1)


@dataclass(eq=False)
class ConnectorSocket:
    """A registered websocket and what it was registered with."""

    ws: RouterWebSocket
    route: str
    connector_instance_id: str
    component_name: str
    remote_ip: str
    protocol: str
    domain: str = "*"
    session: V3Session | None = None
    remote_port: int = 0
    #: The largest websocket message this connector accepts (its announced limit, or 16 KiB).
    message_limit: int = DEFAULT_MESSAGE_LIMIT
    registered_at: float = field(default_factory=time.time)
    socket_id: str = field(default_factory=lambda: f"{_BOOT}-{next(_socket_ids)}")
    #: The connector takes websocket upgrades through the tunnel (docs/websocket-tunnel.rst).
    tunnels: bool = False

    @property
    def inflight(self) -> int:
        if self.session is not None:
            return self.session.inflight
        return 1 if self.ws.in_use else 0

    @property
    def is_v3(self) -> bool:
        return self.session is not None
