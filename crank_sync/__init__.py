"""crank_sync: a threaded, synchronous Cranker router and connector.

Public API: :class:`Router`, :class:`RouterConfig`, :class:`Connector`, :class:`ConnectorConfig`
and the exception tree rooted at :class:`CrankError`.
"""
from ._version import __version__
from .config import ConnectorConfig, RouterConfig
from .connector import Connector
from .connector.wsgi import WsgiTarget
from .errors import (
    BadGateway,
    BadRequest,
    CrankError,
    GatewayTimeout,
    LocalProtocolError,
    NoConnectorAvailable,
    NoRoute,
    ProtocolError,
    RemoteProtocolError,
)
from .router import Router

__all__ = [
    "BadGateway",
    "BadRequest",
    "Connector",
    "ConnectorConfig",
    "CrankError",
    "GatewayTimeout",
    "LocalProtocolError",
    "NoConnectorAvailable",
    "NoRoute",
    "ProtocolError",
    "RemoteProtocolError",
    "Router",
    "RouterConfig",
    "WsgiTarget",
    "__version__",
]
