"""What a connector sends to register, and where a socket worker stands."""
from __future__ import annotations

from enum import Enum
from urllib.parse import quote

from ..protocol import concluded_version, offer_headers
from .frames import MAX_MESSAGE
from .websocket import ConnectorWebSocket

__all__ = ["SocketState", "chosen_version", "endpoint", "handshake_headers"]


def handshake_headers(route: str, protocols: tuple[str, ...], domain: str = "*",
                      token: str | None = None) -> list[str]:
    """Registration headers (protocol.registration.offer_headers), with this side's limit."""
    return offer_headers(route, protocols, message_limit=MAX_MESSAGE, domain=domain,
                         token=token)


def chosen_version(ws: ConnectorWebSocket, offered: tuple[str, ...]) -> str | None:
    """The version the router picked: its echoed subprotocol, or v1 when it echoed none."""
    return concluded_version(ws.headers.get("sec-websocket-protocol"), offered)


def endpoint(router_url: str, action: str, instance_id: str, component: str) -> str:
    return (
        f"{router_url.rstrip('/')}/{action}/?connectorInstanceID={quote(instance_id, safe='')}"
        f"&componentName={quote(component, safe='')}"
    )


class SocketState(str, Enum):
    """Where a socket worker is (a str, so logs and tests read ``"idle"``)."""

    CONNECTING = "connecting"  # registering (or waiting to retry)
    IDLE = "idle"  # a v1 socket waiting for its request
    BUSY = "busy"  # a v1 socket serving its request
    V3 = "v3"  # a v3 socket, serving any number of streams
    DONE = "done"  # the worker has ended


