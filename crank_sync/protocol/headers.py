"""Header rules for a proxy (PROTOCOL.md, "Router behaviour around the protocol")."""
from __future__ import annotations

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


def filter_request_headers(
    headers: Iterable[tuple[str, str]],
    *,
    client_ip: str,
    proto: str,
    by: str,
    via_name: str,
    discard_client_forwarded: bool = False,
    x_forwarded: bool = False,
) -> HeaderList:
    """Headers to send to the target: hop-by-hop and ``Expect`` removed, Forwarded and Via added.

    Duplicates and order are kept; ``Host`` is kept.
    """
    extra = frozenset({"expect", "forwarded"} if discard_client_forwarded else {"expect"})
    out = _drop_hop_by_hop(headers, extra)
    host = next((v for n, v in out if n.lower() == "host"), None)
    out.append(("Forwarded", forwarded_element(client_ip, host, proto, by)))
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


def filter_response_headers(headers: Iterable[tuple[str, str]]) -> HeaderList:
    """Headers to send to the client: hop-by-hop removed; duplicates and encodings kept."""
    return _drop_hop_by_hop(headers, frozenset())
