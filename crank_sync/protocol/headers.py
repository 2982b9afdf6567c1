"""Header rules for a proxy (PROTOCOL.md, "Router behaviour around the protocol")."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

HeaderList = list[tuple[str, str]]


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Lower-cased header names listed in every ``Connection`` header."""
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _drop_hop_by_hop(headers: Iterable[tuple[str, str]], extra: frozenset[str]) -> HeaderList:
    headers = list(headers)
    drop = HOP_BY_HOP | extra | connection_tokens(headers)
    return [(n, v) for n, v in headers if n.lower() not in drop]


def route_of(target: str) -> str:
    """The route of a request target: its first path segment (``""`` for ``/``)."""
    path = target.split("?", 1)[0]
    return path.lstrip("/").split("/", 1)[0]


def _quote_node(address: str) -> str:
    if ":" in address:  # IPv6 needs brackets and quotes (RFC 7239, section 6)
        return f'"[{address}]"'
    return address


def _quote_value(value: str) -> str:
    if value and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def forwarded_element(client_ip: str, host: str | None, proto: str, by: str) -> str:
    """One ``Forwarded`` element (RFC 7239) describing this hop."""
    parts = [f"for={_quote_node(client_ip)}"]
    if host:
        parts.append(f"host={_quote_value(host)}")
    parts.append(f"proto={proto}")
    parts.append(f"by={_quote_value(by)}")
    return ";".join(parts)


def _node(value: str) -> str:
    """An address from X-Forwarded-For as a Forwarded node: IPv6 bracketed and quoted,
    anything that is not a plain token quoted."""
    value = value.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return _quote_value(value)
    return _quote_node(value)


def x_forwarded_elements(headers: HeaderList) -> list[str]:
    """``Forwarded`` elements for the hops an ``X-Forwarded-For`` describes (a load balancer in
    front of the router sends it): one ``for=`` each, the first with the X-Forwarded-Host and
    -Proto it saw. Empty when the request carries ``Forwarded`` already (that chain wins)."""
    if any(n.lower() == "forwarded" for n, _ in headers):
        return []
    hops = [a for n, v in headers if n.lower() == "x-forwarded-for" for a in v.split(",")
            if a.strip()]
    if not hops:
        return []
    first = [f"for={_node(hops[0])}"]
    host = next((v.strip() for n, v in headers if n.lower() == "x-forwarded-host"), "")
    proto = next((v.strip().lower() for n, v in headers if n.lower() == "x-forwarded-proto"),
                 "")
    if host:
        first.append(f"host={_quote_value(host)}")
    if proto in ("http", "https"):
        first.append(f"proto={proto}")
    return [";".join(first)] + [f"for={_node(a)}" for a in hops[1:]]


def filter_request_headers(
    headers: Iterable[tuple[str, str]],
    *,
    client_ip: str,
    proto: str,
    by: str,
    via_name: str,
    discard_client_forwarded: bool = False,
    x_forwarded: bool = False,
    proxy_host: bool = True,
) -> HeaderList:
    """Headers to send to the target: hop-by-hop and ``Expect`` removed, Forwarded and Via added.

    Duplicates and order are kept; ``Host`` is kept unless ``proxy_host`` is False (the
    target then sees its own authority). ``discard_client_forwarded`` drops every forwarding
    header the client sent (``Forwarded`` and ``X-Forwarded-*``); otherwise an
    ``X-Forwarded-For`` becomes Forwarded elements before the router's own.
    """
    extra = frozenset({"expect"} | (_CLIENT_FORWARDED if discard_client_forwarded else set()))
    out = _drop_hop_by_hop(headers, extra)
    host = next((v for n, v in out if n.lower() == "host"), None)
    for element in x_forwarded_elements(out):
        out.append(("Forwarded", element))
    out.append(("Forwarded", forwarded_element(client_ip, host, proto, by)))
    if not proxy_host:
        out = [(n, v) for n, v in out if n.lower() != "host"]
    out.append(("Via", f"1.1 {via_name}"))
    if x_forwarded:
        previous = [v for n, v in out if n.lower() == "x-forwarded-for"]
        out = [(n, v) for n, v in out if n.lower() not in _X_FORWARDED]
        out.append(("X-Forwarded-For", ", ".join([*previous, client_ip])))
        out.append(("X-Forwarded-Proto", proto))
        if host:
            out.append(("X-Forwarded-Host", host))
    return out


_X_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
_CLIENT_FORWARDED = frozenset({"forwarded", "x-forwarded-port"} | _X_FORWARDED)


def filter_response_headers(headers: Iterable[tuple[str, str]],
                            keep_server: bool = False) -> HeaderList:
    """Headers to send to the client: hop-by-hop removed; duplicates and encodings kept. The
    target's ``Server`` is dropped unless ``keep_server`` (nginx hides it too)."""
    return _drop_hop_by_hop(headers, frozenset() if keep_server else frozenset({"server"}))
