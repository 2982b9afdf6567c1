"""Where a connector's routers come from: fixed URLs, a DNS name whose every address is a
router, or a callable; looked at again every ``router_refresh`` seconds on a thread of its
own (``crank-connector-routers``), so a slow or failed lookup never holds up a request.

A lookup that fails (or finds no address) keeps the last set: a DNS hiccup must not
deregister a connector from every router. It is logged once, and once more when it works again.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import ConnectorConfig, check_url, redact_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouterAddress:
    """One router: its URL, and the address to dial when the URL's name stands for several."""

    url: str
    address: str | None = None

    @property
    def shown(self) -> str:
        return redact_url(self.url) + (f" ({self.address})" if self.address else "")


class _LookupFailed(Exception):
    """A DNS name or a router source gave nothing usable this time (never leaves this
    module's callers: the last set is kept)."""


def resolve(host: str, port: int, dns_server: str | None, timeout: float) -> list[str]:
    """The addresses of ``host`` (A and AAAA), sorted; _LookupFailed when there are none."""
    try:
        return [str(ipaddress.ip_address(host))]  # an address already
    except ValueError:
        pass
    if dns_server:
        found = _ask(host, dns_server, timeout)
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as err:
            raise _LookupFailed(f"{host}: {err}") from err
        found = [str(info[4][0]) for info in infos]
    addresses = sorted(set(found), key=lambda a: (":" in a, a))
    if not addresses:
        raise _LookupFailed(f"{host}: no address")
    return addresses


def _ask(host: str, server: str, timeout: float) -> list[str]:
    """A and AAAA records of ``host`` from the DNS server ``host:port`` (dnspython: the
    standard library cannot ask a given server)."""
    try:
        import dns.exception
        import dns.resolver
    except ImportError as err:
        raise _LookupFailed("dns_server needs dnspython: pip install 'crank_sync[dns]'") from err
    name, _, port = server.rpartition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [name.strip("[]")]
    resolver.port = int(port)
    resolver.lifetime = timeout
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as err:
            raise _LookupFailed(f"{host} at {server}: {err}") from err
        found.extend(record.to_text() for record in answer)
    return found


class RouterSource:
    """The routers a connector should be registered with now."""

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self._fixed = [RouterAddress(url) for url in config.routers]
        self._failing = False

    @property
    def live(self) -> bool:
        """The set can change (a DNS name or a callable): it is looked at again."""
        return bool(self.config.router_dns) or self.config.router_source is not None

    def fixed(self) -> list[RouterAddress]:
        return list(self._fixed)

    def current(self) -> list[RouterAddress] | None:
        """The routers now, or None when a lookup failed (keep the last set)."""
        try:
            routers = self._fixed + self._from_dns() + self._from_callable()
        except _LookupFailed as err:
            if not self._failing:
                log.warning("cannot look up the routers (%s): keeping the last known set", err)
            self._failing = True
            return None
        if self._failing:
            log.info("router lookup works again: %d router(s)", len(routers))
        self._failing = False
        return list(dict.fromkeys(routers))

    def _from_dns(self) -> list[RouterAddress]:
        routers = []
        timeout = min(5.0, self.config.router_refresh)
        for url in self.config.router_dns:
            parts = urlsplit(url)
            assert parts.hostname is not None  # checked by the config
            port = parts.port or (443 if parts.scheme == "wss" else 80)
            routers += [RouterAddress(url, address) for address in
                        resolve(parts.hostname, port, self.config.dns_server, timeout)]
        return routers

    def _from_callable(self) -> list[RouterAddress]:
        source: Callable[[], Iterable[str]] | None = self.config.router_source
        if source is None:
            return []
        try:
            urls = list(source())
        except Exception as err:  # noqa: BLE001 - the application's callable, any failure
            raise _LookupFailed(f"router_source raised {err!r}") from err
        for url in urls:
            try:
                check_url("router_source", url, ("ws", "wss"), "ws://127.0.0.1:9070")
            except ValueError as err:
                raise _LookupFailed(str(err)) from err
        return [RouterAddress(url) for url in urls]
