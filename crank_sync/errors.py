"""The exception tree of crank_sync.

Every error that can end a client request knows the HTTP status it becomes, so the router maps
failures to responses in exactly one place (:func:`crank_sync.router.proxy.status_for`). The
errors raised before any request (:class:`SettingError`, :class:`ListenError`) keep the
default. Foreign errors (the socket's, urllib3's) are translated where they enter, with the
original as the ``__cause__``: the connector's workers catch crank_sync errors only.
"""
from __future__ import annotations

import re

__all__ = [
    "Aborted",
    "BadGateway",
    "BadRequest",
    "ClientDisconnected",
    "ClientGone",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectorProtocolError",
    "CrankError",
    "FrameError",
    "GatewayTimeout",
    "HandshakeError",
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
    "ReadTimeout",
    "RegistrationRefused",
    "RemoteProtocolError",
    "SettingError",
    "SocketClosedBeforeResponse",
    "TargetError",
    "TlsError",
    "UriTooLong",
    "WebSocketError",
    "WebSocketsUnsupported",
]


class CrankError(Exception):
    """Root of every error raised by crank_sync."""

    status = 500


class ProtocolError(CrankError):
    """A message that does not follow the Cranker protocol or HTTP/1.1."""

    status = 400


class LocalProtocolError(ProtocolError):
    """We were asked to produce something the protocol does not allow."""

    status = 500


class RemoteProtocolError(ProtocolError):
    """The peer (client or connector) sent something the protocol does not allow."""

    status = 400


class BadRequest(RemoteProtocolError):
    """A malformed client request."""

    status = 400


class HeadersTooLarge(RemoteProtocolError):
    """The client's request head is larger than the configured limit."""

    status = 431


class UriTooLong(RemoteProtocolError):
    """The client's request line is larger than the configured limit."""

    status = 414


class HttpVersionNotSupported(RemoteProtocolError):
    """A request in an HTTP version other than 1.0 and 1.1."""

    status = 505


class MethodNotAllowed(RemoteProtocolError):
    """A method the router refuses to tunnel (TRACE, CONNECT)."""

    status = 405


class NoRoute(CrankError):
    """No connector is registered for the route and there is no catch-all."""

    status = 404


class NoConnectorAvailable(CrankError):
    """The route is known but no idle socket turned up within ``connector_max_wait``."""

    status = 503


class WebSocketsUnsupported(CrankError):
    """A websocket upgrade for a route none of whose connectors tunnels websockets."""

    status = 501


class BadGateway(CrankError):
    """The connector or its target failed before the response started."""

    status = 502


class SocketClosedBeforeResponse(BadGateway):
    """A v1 socket closed (or was lost) before any byte of the response, without an error
    code: a peer closing an idle socket as the request went out. Safe to retry on another
    socket when the request is idempotent and no body byte was sent."""


class ConnectorProtocolError(BadGateway):
    """The connector sent something that is not a valid Cranker response."""


class TargetError(CrankError):
    """The connector's target failed: refused, timed out, closed early, spoke bad HTTP.

    ``reason`` is the few words the connector puts in its close reason or RST_STREAM message
    (``target failed: connection refused``); the foreign error is the ``__cause__``.
    """

    status = 502

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class GatewayTimeout(CrankError):
    """The connector sent nothing for ``idle_timeout`` seconds."""

    status = 504


class ClientGone(CrankError):
    """The client disconnected; nothing can be sent to it any more."""

    status = 499


class ClientDisconnected(ClientGone, OSError):
    """Raised to a WSGI application by ``wsgi.input`` when the request body cannot be read (the
    client or the router went away): an ``OSError``, as frameworks expect from a socket."""


class SettingError(CrankError, ValueError):
    """A setting could not be read or is invalid. ``str()`` is one line naming the setting and
    where the value came from (:mod:`crank_sync.settings`)."""

    def __init__(self, setting: str | None, message: str, source: str | None = None) -> None:
        self.setting = setting
        self.source = source
        text = " ".join(message.split())
        if setting:
            # "x: x must be ..." says its name twice: once is enough
            text = re.sub(rf"^{re.escape(setting)}(:\s*|\s+(?=(must|is|needs)\b))", "", text)
            text = f"{setting}: {text}"
        if source:
            text = f"{text} (from {source})"
        super().__init__(text)


class PluginError(SettingError):
    """A spec of the ``plugins`` setting (``spec``, as given) makes no listener: no such
    module, attribute or plugin name, or its factory raised or returned something else
    (:mod:`crank_sync.plugin_loader`). Raised when the Router or Connector is made."""

    def __init__(self, spec: str, message: str) -> None:
        self.spec = spec
        super().__init__("plugins", f"{spec!r}: {message}")


class ListenError(CrankError, OSError):
    """A router listener could not bind (``Router.start``): ``setting`` (``http_port`` or
    ``registration_port``) names the port, so the command line can say which setting to change;
    ``errno`` and ``strerror`` are the socket's."""

    def __init__(self, err: OSError, setting: str, host: str, port: int) -> None:
        super().__init__(err.errno, err.strerror or str(err))
        self.setting, self.host, self.port = setting, host, port

    def __str__(self) -> str:
        return f"cannot listen on {self.host}:{self.port} ({self.setting}): {self.strerror}"


# -- websockets between routers and connectors ----------------------------------------------


class WebSocketError(CrankError):
    """A websocket between a router and a connector failed: it could not be opened, the peer
    broke the protocol, nothing arrived in time, or it ended. websocket-client's and the
    socket's errors become one of these where they arise (the connector's
    :mod:`~crank_sync.connector.websocket` and :mod:`~crank_sync.connector.handshake`)."""

    status = 502


class HandshakeError(WebSocketError):
    """The upgrade could not be made: not a websocket URL, a proxy refused the tunnel, or the
    answer is not a valid websocket handshake."""


class RegistrationRefused(WebSocketError):
    """The router answered a connector's upgrade (to register or deregister) with
    ``status_code`` other than 101; ``body`` is the start of what it said why."""

    def __init__(self, status_code: int, status_message: str = "",
                 headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        super().__init__(f"Handshake status {status_code} {status_message}")
        self.status_code = status_code
        self.status_message = status_message
        self.headers = headers if headers is not None else {}
        self.body = body


class TlsError(WebSocketError):
    """The TLS handshake with the router failed: its certificate is not trusted, ours was not
    accepted, or only one end speaks TLS."""


class ConnectionLost(WebSocketError):
    """The websocket could not be opened or has ended: refused, reset, timed out while
    opening, closed by the peer, or a read or write failed."""


class ConnectionClosed(ConnectionLost):
    """The router's end of a connector websocket is closing or closed: ``reason`` is its close
    code (1005 when there was none), ``message`` its close reason."""

    def __init__(self, reason: int = 1005, message: str | None = None) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"Connection closed: {reason} {message or ''}")


class ReadTimeout(WebSocketError):
    """Nothing arrived within the socket's timeout: the connector pings an idle router then,
    and gives up a request whose body stopped coming."""


class FrameError(WebSocketError):
    """The peer broke the websocket protocol: close with ``code``. ``too_long``: the frame or
    message is over the limit, or its length cannot be (1009, or 1002 for a 64-bit length
    with the top bit set)."""

    def __init__(self, code: int, reason: str, *, too_long: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.too_long = too_long or code == 1009


class Aborted(CrankError):
    """The response had started when the exchange failed: the client connection is dropped
    (its status is long gone; 502 is what the metrics count).

    ``kind`` says why, for the access log and ``crank_requests_aborted_total``:
    ``connector_lost``, ``idle_timeout`` or ``bad_response`` (``client_gone`` is
    :class:`ClientGone`'s).
    """

    status = 502

    def __init__(self, message: str, kind: str = "connector_lost") -> None:
        super().__init__(message)
        self.kind = kind


class ListenerFailed(CrankError):
    """A proxy or connector listener raised something other than
    :class:`~crank_sync.hooks.Reject`: that request fails (500 at the router), the others go
    on; the listener's exception is the ``__cause__`` and is logged with its traceback."""

    status = 500
