"""Building a PEP 3333 environ from a tunnelled request: paths, hosts, Forwarded."""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes


def _native(text: str) -> str:
    """A WSGI native string: each byte as one latin-1 character (PEP 3333, "bytes as str")."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _percent_decode(path: str) -> str:
    return unquote_to_bytes(path).decode("latin-1")


def _split_host(host: str, scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host header (``[::1]:8080``, ``example.com``)."""
    default = "443" if scheme == "https" else "80"
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            rest = host[end + 1:]
            port = rest[1:] if rest.startswith(":") and rest[1:].isdigit() else default
            return host[1:end], port
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, port
    return host, default


def _forwarded_params(value: str) -> dict[str, str]:
    """The parameters of the last element of a ``Forwarded`` header (RFC 7239)."""
    element = _split_unquoted(value, ",")[-1]
    params: dict[str, str] = {}
    for pair in _split_unquoted(element, ";"):
        name, sep, val = pair.partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        params[name.strip().lower()] = val
    return params


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _node(value: str) -> tuple[str, str | None]:
    """Address and port of a Forwarded ``for=`` node: ``1.2.3.4:5``, ``[::1]:5``, ``unknown``."""
    if value.startswith("["):
        addr, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return addr, port
    addr, sep, port = value.partition(":")
    return addr, (port if sep else None)
