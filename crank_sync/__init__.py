"""crank_sync: a threaded, synchronous Cranker router and connector.

Public API: :class:`Router`, :class:`RouterConfig`, :class:`Connector`, :class:`ConnectorConfig`
and the exception tree rooted at :class:`CrankError`.
"""
import logging

from ._version import __version__
from .config import ConnectorConfig, RouterConfig
from .connector import Connector
from .connector.wsgi import WsgiTarget
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
from .router import Router

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
