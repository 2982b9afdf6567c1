"""crank_sync: a threaded, synchronous Cranker router and connector.

Public API: :class:`Router`, :class:`RouterConfig`, :class:`Connector`, :class:`ConnectorConfig`
and the exception tree rooted at :class:`CrankError`.
"""
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import ConnectorConfig, RouterConfig
from .errors import (
    Aborted,
    BadGateway,
    BadRequest,
    ClientDisconnected,
    ClientGone,
    ConnectionClosed,
    ConnectionLost,
    ConnectorProtocolError,
    CrankError,
    FrameError,
    GatewayTimeout,
    HandshakeError,
    HeadersTooLarge,
    HttpVersionNotSupported,
    ListenerFailed,
    ListenError,
    LocalProtocolError,
    MethodNotAllowed,
    NoConnectorAvailable,
    NoRoute,
    PluginError,
    ProtocolError,
    ReadTimeout,
    RegistrationRefused,
    RemoteProtocolError,
    SettingError,
    SocketClosedBeforeResponse,
    TargetError,
    TlsError,
    UriTooLong,
    WebSocketError,
    WebSocketsUnsupported,
)
from .hooks import (
    ConnectorListener,
    Headers,
    ProxyInfo,
    ProxyListener,
    RegistrationState,
    Reject,
    RequestInfo,
)

if TYPE_CHECKING:
    from .connector import Connector
    from .connector.wsgi import WsgiTarget
    from .router import Router


def __getattr__(name: str) -> Any:
    # The router and the connector are imported on first use: a process runs one of them,
    # and is spared the other's modules (the router's about 3 MiB; the connector's, with
    # urllib3 and websocket-client, about 7 MiB).
    if name == "Router":
        from .router import Router

        return Router
    if name == "Connector":
        from .connector import Connector

        return Connector
    if name == "WsgiTarget":
        from .connector.wsgi import WsgiTarget

        return WsgiTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Aborted",
    "BadGateway",
    "BadRequest",
    "ClientDisconnected",
    "ClientGone",
    "ConnectionClosed",
    "ConnectionLost",
    "Connector",
    "ConnectorConfig",
    "ConnectorListener",
    "ConnectorProtocolError",
    "CrankError",
    "FrameError",
    "GatewayTimeout",
    "HandshakeError",
    "Headers",
    "HeadersTooLarge",
    "HttpVersionNotSupported",
    "ListenError",
    "ListenerFailed",
    "LocalProtocolError",
    "MethodNotAllowed",
    "NoConnectorAvailable",
    "NoRoute",
    "PluginError",
    "ProtocolError",
    "ProxyInfo",
    "ProxyListener",
    "ReadTimeout",
    "RegistrationRefused",
    "RegistrationState",
    "Reject",
    "RemoteProtocolError",
    "RequestInfo",
    "Router",
    "RouterConfig",
    "SettingError",
    "SocketClosedBeforeResponse",
    "TargetError",
    "TlsError",
    "UriTooLong",
    "WebSocketError",
    "WebSocketsUnsupported",
    "WsgiTarget",
    "__version__",
]

# a library logs, the application decides where to: no "No handlers could be found"
logging.getLogger(__name__).addHandler(logging.NullHandler())
