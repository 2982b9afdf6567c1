"""Who the client is, when trusted proxies stand between it and the router.

The address is the socket's (the immediate peer), unless that peer is a trusted proxy: then
the forwarding header it appends to (``X-Forwarded-For``, or ``Forwarded``'s ``for=``) is
walked from the right, hop by hop, past every trusted address; the first untrusted one is the
client. Nobody else's forwarding header is read at all, so a client that is not a trusted
proxy cannot name itself someone else.

A hop that names no address (``for=unknown``, an obfuscated ``for=_hidden``, a ``Forwarded``
element without ``for=``, or text that is no address) ends the walk: what stands left of it
was written by someone we cannot vouch for, so the client is the last address we could trust
(the proxy that wrote the unreadable hop). When every hop is trusted, the left-most one is the
client. Pure: no sockets, no clock.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Protocol

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HeaderLines(Protocol):
    """Request headers that give every line of one name (an email Message, hooks.Headers)."""

    def get_all(self, name: str) -> Sequence[str] | None: ...


def parse_address(text: str) -> Address | None:
    """An address from a socket peer, an ``X-Forwarded-For`` item or a ``for=`` value (its
    quotes already removed): ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]``,
    ``[2001:db8::1]:443``. IPv4-mapped IPv6 addresses become IPv4. None when it is none."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:] if end > 0 else "?"
        if end < 0 or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two or more
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # no zone ids
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    """A port number, or an obfuscated one (``_abc``, RFC 7239 section 6.3)."""
    return text.isdigit() or (len(text) > 1 and text[0] == "_" and text[1:].isalnum())


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator``, except inside a quoted string (with ``\\`` escapes)."""
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str | None:
    value = value.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            return None
        return value[1:-1]
    return value


def forwarded_hops(values: Iterable[str]) -> list[Address | None]:
    """The ``for=`` address of each element of the ``Forwarded`` header lines, left to right
    (RFC 7239); None for an element that names no address."""
    hops: list[Address | None] = []
    for line in values:
        for element in _split_outside_quotes(line, ","):
            if not element.strip():
                continue
            address = None
            for pair in _split_outside_quotes(element, ";"):
                name, equals, value = pair.partition("=")
                if equals and name.strip().lower() == "for":
                    text = _unquote(value)
                    address = parse_address(text) if text is not None else None
                    break
            hops.append(address)
    return hops


def x_forwarded_for_hops(values: Iterable[str]) -> list[Address | None]:
    """The addresses of the ``X-Forwarded-For`` header lines, left to right; None for an item
    that is none (``unknown``, a name)."""
    return [parse_address(item) for line in values for item in line.split(",")
            if item.strip()]


class TrustedProxies:
    """The networks of ``trusted_proxies``, and the client address they imply."""

    def __init__(self, networks: Iterable[str], header: str = "x-forwarded-for") -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in networks)
        if header not in ("x-forwarded-for", "forwarded"):
            raise ValueError(f"header must be x-forwarded-for or forwarded, got {header!r}")
        self.header = header

    def trusts(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def client_of(self, peer: str, headers: HeaderLines) -> str:
        """The client behind ``peer`` (the socket's address), given the request's headers
        (only the lines of the trusted header, :attr:`header`, are read)."""
        values = headers.get_all(self.header) or []
        parse = forwarded_hops if self.header == "forwarded" else x_forwarded_for_hops
        return client_address(peer, parse(values) if values else [], self)


def client_address(peer: str, hops: Sequence[Address | None], trusted: TrustedProxies) -> str:
    """The right-most untrusted address of ``peer`` preceded by ``hops`` (left to right, as
    the header lists them); see the module docstring for unreadable hops."""
    current = parse_address(peer)
    if current is None or not trusted.trusts(current):
        return peer
    for hop in reversed(hops):
        if hop is None:
            break
        current = hop
        if not trusted.trusts(hop):
            break
    return str(current)
