"""The exception tree of crank_sync.

Every error that can end a client request knows the HTTP status it becomes, so the router maps
failures to responses in exactly one place (:func:`crank_sync.router.proxy.status_for`).
"""
from __future__ import annotations

__all__ = [
    "BadGateway",
    "BadRequest",
    "ClientGone",
    "ConnectorProtocolError",
    "CrankError",
    "GatewayTimeout",
    "HeadersTooLarge",
    "HttpVersionNotSupported",
    "ListenerFailed",
    "LocalProtocolError",
    "MethodNotAllowed",
    "NoConnectorAvailable",
    "NoRoute",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketClosedBeforeResponse",
    "TargetError",
    "UriTooLong",
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


class ListenerFailed(CrankError):
    """A proxy or connector listener raised something other than
    :class:`~crank_sync.hooks.Reject`: that request fails (500 at the router), the others go
    on; the listener's exception is the ``__cause__`` and is logged with its traceback."""

    status = 500
