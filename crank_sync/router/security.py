"""Who may reach the registration port: TLS contexts, tokens, networks, rates."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import ssl
import threading
import time

from ..config import RouterConfig
from ..tls_files import load_cert_chain, loading

log = logging.getLogger(__name__)


def server_context(cert: str, key: str, client_ca: str | None = None,
                   prefix: str = "") -> ssl.SSLContext:
    """A server-side TLS context with modern defaults (TLS 1.2+), optionally requiring
    client certificates signed by ``client_ca``. A file that does not load is a SettingError
    naming ``<prefix>tls_cert`` (or ``registration_client_ca``)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain(ctx, cert, key, f"{prefix}tls_cert", f"{prefix}tls_key")
    if client_ca:
        with loading(f"{prefix}client_ca", f"the CA certificates {client_ca!r}"):
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


class PendingTicket:
    """One admitted connection's place under :class:`PendingLimit`; released once.
    ``released`` is read and set under the limit's lock only."""

    __slots__ = ("limit", "ip", "released")

    def __init__(self, limit: PendingLimit, ip: str) -> None:
        self.limit = limit
        self.ip = ip
        self.released = False

    def release(self) -> None:
        self.limit.release(self)


class PendingLimit:
    """Caps connections that have not finished their TLS handshake and request head, per
    address and in all. The listener thread asks :meth:`admit` before a worker thread takes a
    connection, so a flood of silent or trickling connections costs no threads beyond the cap.

    Refusals are logged at most once per ``log_every`` seconds, with a count, so a flood does
    not become a flood of log lines.
    """

    def __init__(self, per_address: int, total: int, log_every: float = 10.0) -> None:
        self.per_address = per_address
        self.total = total
        self._log_every = log_every
        self._lock = threading.Lock()
        self._by_ip: dict[str, int] = {}
        self._count = 0
        self._refused = 0
        self._logged_at: float | None = None

    def admit(self, ip: str) -> PendingTicket | None:
        """A ticket to release once the head is read (or the connection ends), or None when
        ``ip`` or everyone is over the cap: the caller closes the connection."""
        with self._lock:
            mine = self._by_ip.get(ip, 0)
            if mine < self.per_address and self._count < self.total:
                self._by_ip[ip] = mine + 1
                self._count += 1
                return PendingTicket(self, ip)
            self._refused += 1
            now = time.monotonic()
            if self._logged_at is not None and now - self._logged_at < self._log_every:
                return None
            self._logged_at = now
            refused, self._refused = self._refused, 0
            over_address = mine >= self.per_address
        log.warning(
            "registration port: closed %d connection(s) over the cap of pending connections "
            "(last from %s: %s); see registration_max_pending%s", refused, ip,
            f"{mine} pending from that address" if over_address
            else f"{self.total} pending in all",
            "_per_address" if over_address else "")
        return None

    def release(self, ticket: PendingTicket) -> None:
        """Give ``ticket``'s place back (a second release of the same ticket does nothing)."""
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            self._count -= 1
            left = self._by_ip[ticket.ip] - 1
            if left:
                self._by_ip[ticket.ip] = left
            else:
                del self._by_ip[ticket.ip]
