"""Registration rules, both halves (PROTOCOL.md, "Registration"): which Cranker versions
exist, what a connector offers, what a router picks, and what the connector concludes from
the router's answer. No I/O: the router's registration handler and the connector's socket
worker call these with the header values they read.
"""
from __future__ import annotations

from ..errors import BadRequest
from .limits import MESSAGE_LIMIT_HEADER

#: Cranker versions crank_sync speaks, preferred first.
SUPPORTED_VERSIONS = ("3.0", "1.0")
#: v1's legacy header, sent by a connector that offers v1 and honoured by a router when no
#: subprotocol is offered.
LEGACY_HEADER = "CrankerProtocol"
_PREFIX = "cranker_"


def subprotocol(version: str) -> str:
    """The websocket subprotocol token of a Cranker version (``3.0`` -> ``cranker_3.0``)."""
    return _PREFIX + version


def version_of(token: str) -> str:
    """The Cranker version a subprotocol token names (case and padding ignored)."""
    return token.strip().lower().removeprefix(_PREFIX)


def offered_subprotocols(values: list[str]) -> list[str]:
    """The subprotocol tokens of every ``Sec-WebSocket-Protocol`` header value, in order."""
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def offer_headers(route: str, protocols: tuple[str, ...], *, message_limit: int,
                  domain: str = "*", token: str | None = None) -> list[str]:
    """The connector's registration headers. The subprotocol list is sent as a plain header
    so that a router which echoes none still gets a v1 connection (``CrankerProtocol``)."""
    headers = [f"Route: {route}"]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    if "1.0" in protocols:
        headers.append(f"{LEGACY_HEADER}: 1.0")
    headers.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocol(p) for p in protocols))
    headers.append(f"{MESSAGE_LIMIT_HEADER}: {message_limit}")
    if domain != "*" and "3.0" in protocols:
        headers.append(f"Domain: {domain}")
    return headers


def negotiate(offered: list[str], legacy: str | None,
              supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> tuple[str, str | None]:
    """The router's pick: ``(version, subprotocol to echo or None)``.

    The first offered ``cranker_<v>`` subprotocol in ``supported`` wins; only when none is
    offered does the legacy ``CrankerProtocol`` header decide. Raises BadRequest (400).
    """
    if offered:
        for token in offered:
            if version_of(token) in supported:
                return version_of(token), token.strip()
        raise BadRequest(
            f"none of the offered subprotocols {offered} is supported; "
            f"this router speaks {', '.join(subprotocol(v) for v in supported)}"
        )
    if legacy is not None:
        version = legacy.strip()
        if version in supported:
            return version, None
        raise BadRequest(f"{LEGACY_HEADER} {version!r} is not supported")
    raise BadRequest(f"no Sec-WebSocket-Protocol or {LEGACY_HEADER} header: cannot pick a version")


def concluded_version(echo: str | None, offered: tuple[str, ...]) -> str | None:
    """The connector's reading of the router's 101: the echoed subprotocol's version, or v1
    when the router echoed none; None when that is not a version the connector offered."""
    if echo and echo.strip():
        version = version_of(echo)
        return version if version in offered else None
    return "1.0" if "1.0" in offered else None
