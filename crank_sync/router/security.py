"""Who may reach the registration port: TLS contexts, tokens, networks, rates."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import ssl
import threading
import time

from ..config import RouterConfig

log = logging.getLogger(__name__)


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server-side TLS context with modern defaults (TLS 1.2+), optionally requiring
    client certificates signed by ``client_ca``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _read_tokens(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _matches(presented: str | None, tokens: tuple[str, ...]) -> bool:
    """Constant-time comparison against every token (no early exit on a match)."""
    candidate = (presented or "").encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(candidate, token.encode())
    return found and presented is not None


class _RateLimiter:
    """Token bucket per IP: ``rate`` per second, bursts of ``2 * rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, ip: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(ip, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if len(self._buckets) > 10000:  # forget quiet addresses, keep memory bounded
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            if tokens < 1:
                self._buckets[ip] = (tokens, now)
                return False
            self._buckets[ip] = (tokens - 1, now)
            return True


class RegistrationGuard:
    """The checks made before a registration, deregistration or admin request is served."""

    def __init__(self, config: RouterConfig) -> None:
        tokens = list(config.registration_tokens)
        if config.registration_token_file:
            tokens.extend(_read_tokens(config.registration_token_file))
        self.tokens = tuple(tokens)
        self.admin_tokens = config.admin_tokens
        self.networks = tuple(ipaddress.ip_network(n, strict=False)
                              for n in config.registration_allow)
        self.limiter = _RateLimiter(config.registration_rate_limit)

    def ip_allowed(self, ip: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def token_ok(self, authorization: str | None) -> bool:
        return not self.tokens or _matches(_bearer(authorization), self.tokens)

    def admin_ok(self, authorization: str | None) -> bool:
        return not self.admin_tokens or _matches(_bearer(authorization), self.admin_tokens)

    def rate_ok(self, ip: str) -> bool:
        return self.limiter.allow(ip)
