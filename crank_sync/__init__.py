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
    BadGateway,
    BadRequest,
    ClientGone,
    ConnectorProtocolError,
    CrankError,
    GatewayTimeout,
    HeadersTooLarge,
    HttpVersionNotSupported,
    ListenerFailed,
    LocalProtocolError,
    MethodNotAllowed,
    NoConnectorAvailable,
    NoRoute,
    ProtocolError,
    RemoteProtocolError,
    SocketClosedBeforeResponse,
    TargetError,
    UriTooLong,
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
    "BadGateway",
    "BadRequest",
    "ClientGone",
    "Connector",
    "ConnectorConfig",
    "ConnectorListener",
    "ConnectorProtocolError",
    "CrankError",
    "GatewayTimeout",
    "Headers",
    "HeadersTooLarge",
    "HttpVersionNotSupported",
    "ListenerFailed",
    "LocalProtocolError",
    "MethodNotAllowed",
    "NoConnectorAvailable",
    "NoRoute",
    "ProtocolError",
    "ProxyInfo",
    "ProxyListener",
    "RegistrationState",
    "Reject",
    "RemoteProtocolError",
    "RequestInfo",
    "Router",
    "RouterConfig",
    "SocketClosedBeforeResponse",
    "TargetError",
    "UriTooLong",
    "WsgiTarget",
    "__version__",
]

# a library logs, the application decides where to: no "No handlers could be found"
logging.getLogger(__name__).addHandler(logging.NullHandler())
