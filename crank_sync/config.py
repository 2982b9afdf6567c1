"""Frozen, validated configuration for the router and the connector."""
from __future__ import annotations

import importlib.util
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .config_checks import check_file, check_positive, check_url, listeners_of, redact_url
from .limit_values import limits_by_route, route_tables
from .plugin_loader import check_specs
from .protocol.registration import SUPPORTED_VERSIONS
from .protocol.routes import RESOLVERS
from .protocol.routes import validate_route as _validate_route

#: ``Via: 1.1 <name>`` and ``Forwarded: by=<name>`` need an HTTP token or a host[:port].
_VIA_RE = re.compile(r"^(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")

#: The forwarding headers ``trusted_proxy_header`` may name.
TRUSTED_PROXY_HEADERS = ("x-forwarded-for", "forwarded")

__all__ = ["ConnectorConfig", "RouterConfig", "check_file", "check_url", "redact_url",
           "validate_route"]
#: Cranker protocol versions crank_sync speaks, in order of preference.
SUPPORTED_PROTOCOLS = SUPPORTED_VERSIONS


def validate_route(route: str) -> str:
    """The route a connector serves, stripped, or ValueError: an empty route is a mistake
    (the catch-all is asked for as ``*``), and so are ``.``, ``..`` and names ending in a dot
    (:mod:`crank_sync.protocol.routes`)."""
    return _validate_route(route)


@dataclass(frozen=True)
class RouterConfig:
    """Settings of a :class:`crank_sync.Router`. All durations are in seconds."""

    host: str = "127.0.0.1"
    http_port: int = 9000
    registration_port: int = 9070
    #: How long a client request waits for an idle connector socket before 503.
    connector_max_wait: float = 5.0
    #: How long the router waits for data from a connector before 504 (or abort).
    idle_timeout: float = 60.0
    #: How long a client connection may be silent (keep-alive or mid-request) before it is closed.
    client_timeout: float = 60.0
    #: A websocket through the tunnel with no bytes either way (pings count) for this long is
    #: closed with 1001 at both ends; 0: never.
    websocket_idle_timeout: float = 300.0
    #: Largest request head (request line plus headers) accepted from a client; above it, 431.
    max_header_bytes: int = 65536
    #: Largest websocket message accepted from a connector.
    max_message_bytes: int = 16 * 1024 * 1024
    #: Bytes of connector data buffered per socket before the router stops reading it.
    socket_buffer_bytes: int = 512 * 1024
    #: Idle connector sockets are pinged this often; one missed pong closes the socket.
    ping_interval: float = 20.0
    #: On stop (SIGTERM), how long in-flight requests may take to finish before sockets close.
    drain_timeout: float = 30.0
    #: On stop, seconds during which the health checks answer 503 while requests are still
    #: served as usual, before the client port stops accepting: a load balancer's checks
    #: see the router go before it goes.
    drain_grace: float = 0.0
    #: For this many seconds after the start, a route no connector has registered yet gets 503
    #: (a load balancer retries another router), not 404: connectors take a moment to come.
    startup_grace: float = 0.0
    #: A path on the client port answering the load balancer's health checks: 200, or 503 from
    #: the moment the router starts to stop (e.g. /crank-health).
    health_path: str | None = None
    #: Name used in ``Via`` and ``Forwarded: by=``.
    via_name: str = "crank_sync"
    #: Drop the forwarding headers the client sent (Forwarded, X-Forwarded-For, -Proto, -Host,
    #: -Port) instead of appending to them.
    discard_client_forwarded: bool = False
    #: Send the client's Host to the target; false: the target sees its own authority.
    proxy_host_header: bool = True
    #: Pass the target's Server header to the client (dropped by default).
    proxy_server_header: bool = False
    #: Also send X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host.
    x_forwarded_headers: bool = False
    #: A client must send its whole request head within this many seconds of its first byte.
    header_timeout: float = 10.0
    #: Certificate chain (PEM) to serve the client port over TLS (https).
    tls_cert: str | None = None
    #: Private key (PEM) of tls_cert.
    tls_key: str | None = None
    #: Certificate chain (PEM) to serve the registration port over TLS (wss).
    registration_tls_cert: str | None = None
    #: Private key (PEM) of registration_tls_cert.
    registration_tls_key: str | None = None
    #: CA bundle (PEM): connectors must present a client certificate it signed (mutual TLS).
    registration_client_ca: str | None = None
    #: Bearer tokens a connector must present to register or deregister (any one of them).
    registration_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: File with more registration tokens, one per line (lines starting with # ignored).
    registration_token_file: str | None = None
    #: Networks (CIDR) allowed to reach the registration port; empty allows every address.
    registration_allow: tuple[str, ...] = ()
    #: Registrations per second accepted from one IP (bursts of twice that); 0 = no limit.
    registration_rate_limit: float = 0.0
    #: Registration-port connections from one IP still in their TLS handshake or request head;
    #: a connection over it is closed at once.
    registration_max_pending_per_address: int = 16
    #: Registration-port connections still in their TLS handshake or request head, from all
    #: addresses; a connection over it is closed at once.
    registration_max_pending: int = 128
    #: Bearer tokens for the admin endpoints (all but /health); empty = no token needed.
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: Seconds a route stays known after its last connector left: requests get 503 (the
    #: service is known but down), then 404 once it is forgotten.
    route_keep_time: float = 7200.0
    #: How a request finds its route: first-segment (/a/b/c -> a, every Cranker router) or
    #: longest-prefix (routes a and a/b: /a/b/c -> a/b).
    route_resolver: str = "first-segment"
    #: Cranker versions connectors may register with ("1.0" alone makes a v1-only router).
    protocols: tuple[str, ...] = ("3.0", "1.0")
    #: Requests allowed per route (or per client, see rate_by) as COUNT/s, COUNT/min or
    #: COUNT/h (e.g. 100/s); none = no rate limit. Over it: 429 with Retry-After.
    rate_limit: str | None = None
    #: Requests a rate-limit bucket holds for bursts; 0 = one second's worth (at least 1).
    rate_burst: int = 0
    #: What a rate limit counts: route (all its clients together), client (each client
    #: address) or route+client (each client on each route).
    rate_by: str = "route"
    #: Requests one route serves at once; 0 = no cap. Over it, requests wait in a queue
    #: (max_queue, queue_timeout), then get 503 with Retry-After.
    max_in_flight: int = 0
    #: Requests that may wait for a route at max_in_flight; more get 503 at once.
    max_queue: int = 0
    #: How long a queued request waits for a free slot before 503.
    queue_timeout: float = 10.0
    #: Limits of single routes, over the defaults above: TOML tables [routes.NAME] with rate,
    #: burst, rate_by, max_in_flight, max_queue, queue_timeout; on the command line
    #: NAME:key=value,key=value (several routes separated by ;).
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Proxies (addresses or CIDR networks, IPv4 and IPv6) whose forwarding header names the
    #: client, for rate limits by client and the access log; no one else's header is trusted.
    trusted_proxies: tuple[str, ...] = ()
    #: The header trusted proxies append the client to: x-forwarded-for or forwarded.
    trusted_proxy_header: str = "x-forwarded-for"
    #: redis://HOST:PORT/N: rate-limit buckets shared by every router using it; none = each
    #: router counts alone. When it is down, the router counts alone until it is back.
    rate_limit_store: str | None = None
    #: Connect and read timeout of the rate-limit store.
    rate_limit_store_timeout: float = 0.1
    #: After the rate-limit store failed, how long the router counts alone before trying it.
    rate_limit_store_retry: float = 5.0

    #: Listeners to add, each NAME [key=value ...]: a plugin name (access-log, server-timing,
    #: header-auth, or an entry point of group crank_sync.plugins) or module:factory.
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("registration_tokens", "registration_allow", "admin_tokens", "protocols",
                     "trusted_proxies", "plugins"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        self._check_tls()
        for network in self.registration_allow:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as err:
                raise ValueError(f"registration_allow: {network!r} is not a network: give an "
                                 f"address or CIDR such as 10.0.0.0/8") from err
        protocols = tuple(p.lower().removeprefix("cranker_") for p in self.protocols)
        if not protocols or any(p not in SUPPORTED_PROTOCOLS for p in protocols):
            raise ValueError(f"protocols must be taken from {SUPPORTED_PROTOCOLS}")
        object.__setattr__(self, "protocols", protocols)
        self._check_numbers()
        check_specs(self.plugins)
        if self.route_resolver not in RESOLVERS:
            raise ValueError(f"route_resolver must be one of {', '.join(RESOLVERS)}, "
                             f"got {self.route_resolver!r}")
        if not _VIA_RE.match(self.via_name):
            raise ValueError(f"via_name: {self.via_name!r} is not an HTTP token or a "
                             "host[:port]: use letters, digits and -._~ (e.g. router-1)")
        self._check_limits()

    def _check_limits(self) -> None:
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as err:
                raise ValueError(f"trusted_proxies: {network!r} is not a network: give an "
                                 f"address or CIDR such as 10.0.0.0/8 or fd00::/8") from err
        header = self.trusted_proxy_header.strip().lower()
        if header not in TRUSTED_PROXY_HEADERS:
            raise ValueError(f"trusted_proxy_header must be one of "
                             f"{', '.join(TRUSTED_PROXY_HEADERS)}, got {header!r}")
        object.__setattr__(self, "trusted_proxy_header", header)
        object.__setattr__(self, "rate_by", self.rate_by.strip().lower())
        object.__setattr__(self, "routes", route_tables(self.routes))
        for name in self.routes:
            try:
                validate_route(name)
            except ValueError as err:
                raise ValueError(f"routes: {name!r}: {err}") from None
        limits_by_route(self)
        for name in ("rate_limit_store_timeout", "rate_limit_store_retry"):
            check_positive(name, getattr(self, name))
        if self.rate_limit_store is not None:
            check_url("rate_limit_store", self.rate_limit_store, ("redis", "rediss"),
                      "redis://127.0.0.1:6379/0")
            if importlib.util.find_spec("redis") is None:
                raise ValueError("rate_limit_store needs the redis package: "
                                 "pip install 'crank_sync[redis]'")

    def _check_tls(self) -> None:
        for cert, key in (("tls_cert", "tls_key"),
                          ("registration_tls_cert", "registration_tls_key")):
            if bool(getattr(self, cert)) != bool(getattr(self, key)):
                raise ValueError(f"{cert} and {key} must be given together")
        if self.registration_client_ca and not self.registration_tls_cert:
            raise ValueError("registration_client_ca needs registration_tls_cert and _key")
        for name in ("tls_cert", "tls_key", "registration_tls_cert", "registration_tls_key",
                     "registration_client_ca", "registration_token_file"):
            check_file(name, getattr(self, name))

    def _check_numbers(self) -> None:
        if self.registration_rate_limit < 0:
            raise ValueError("registration_rate_limit must be 0 (off) or positive")
        if self.websocket_idle_timeout < 0:
            raise ValueError("websocket_idle_timeout must be 0 (never) or positive")
        for name in ("drain_grace", "startup_grace"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (none) or positive")
        for name in ("connector_max_wait", "idle_timeout", "client_timeout", "ping_interval",
                     "drain_timeout", "header_timeout"):
            check_positive(name, getattr(self, name))
        self._check_ports_and_path()
        for name in ("registration_max_pending_per_address", "registration_max_pending"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be at least 1024")
        if self.route_keep_time < 0:
            raise ValueError("route_keep_time must be 0 or more seconds")
        if self.socket_buffer_bytes < 65536:
            raise ValueError("socket_buffer_bytes must be at least 65536")

    def _check_ports_and_path(self) -> None:
        for name in ("http_port", "registration_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} must be 0..65535, got {port!r}")
        if self.health_path is not None and (not self.health_path.startswith("/")
                                             or not self.health_path.isprintable()
                                             or " " in self.health_path):
            raise ValueError(f"health_path must be a path starting with /, e.g. /crank-health, "
                             f"got {self.health_path!r}")


@dataclass(frozen=True)
class ConnectorConfig:
    """Settings of a :class:`crank_sync.Connector`. All durations are in seconds."""

    #: ``http(s)://host:port[/prefix]`` of the service, or a WSGI callable served in-process.
    target: Any
    route: str
    #: ws(s):// URLs of the routers to register with.
    routers: tuple[str, ...] = ()
    #: ws(s):// URLs whose host names are resolved: each of their addresses (A and AAAA records)
    #: is a router, followed as they come and go (besides ``routers``). One per port when
    #: every host runs several router workers.
    router_dns: tuple[str, ...] = ()
    #: Seconds between two looks at router_dns (and router_source) for routers come and gone.
    router_refresh: float = 30.0
    #: host:port of the DNS server to ask for router_dns instead of the system's resolver
    #: (pip install 'crank_sync[dns]').
    dns_server: str | None = None
    #: A callable returning router URLs, asked every router_refresh seconds (Python only).
    router_source: Any = field(default=None, metadata={"setting": False})
    component_name: str = "crank_sync"
    sliding_window: int = 2
    connector_instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Cranker versions to offer, in order of preference; the router picks.
    protocols: tuple[str, ...] = ("3.0", "1.0")
    #: v3 only: the Host this connector serves; the router routes that Host here before paths.
    domain: str = "*"
    #: Threads replaying v3 streams against the target (shared by all v3 sockets).
    v3_workers: int = 256
    #: v3 sockets kept at each router (v3 carries many requests per socket). One socket batches
    #: frames best: about 45% more requests/s under concurrency than two; two halve what a
    #: dropped socket takes with it.
    v3_sockets: int = 1
    #: Idle sockets send a ping this often; no frame for two intervals means the router is dead.
    ping_interval: float = 20.0
    connect_timeout: float = 10.0
    #: How long the connector waits for the target (headers or a body chunk) or the router.
    idle_timeout: float = 60.0
    #: Size of the body chunks read from the target and sent to the router.
    chunk_size: int = 65536
    #: Bearer token sent to the routers on register and deregister.
    token: str | None = field(default=None, repr=False)
    #: CA bundle (PEM) to verify wss:// routers with, instead of the system's.
    ca_file: str | None = None
    #: Verify the router's certificate and hostname. False affects this connector only.
    verify: bool = True
    #: Client certificate (PEM) for routers that require mutual TLS.
    client_cert: str | None = None
    #: Private key (PEM) of client_cert.
    client_key: str | None = None
    #: CA bundle (PEM) to verify an https:// target with, instead of the system's.
    target_ca_file: str | None = None
    #: Verify an https:// target's certificate and hostname.
    target_verify: bool = True
    #: :class:`~crank_sync.hooks.ConnectorListener` objects, called in this order for every
    #: request and registration (objects, so no command-line or file setting).
    listeners: tuple[Any, ...] = field(default=(), metadata={"setting": False})
    #: Listeners to add (after any given in Python), each NAME [key=value ...]: a plugin name
    #: (access-log, or an entry point of group crank_sync.plugins) or module:factory.
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "listeners", listeners_of(self.listeners))
        plugins = (self.plugins,) if isinstance(self.plugins, str) else tuple(self.plugins)
        object.__setattr__(self, "plugins", plugins)
        check_specs(plugins)
        if not isinstance(self.route, str) or not self.route.strip():
            # an empty route used to become the catch-all without a word
            raise ValueError("route: must not be empty: give the first path segment to serve, "
                             "or '*' for the catch-all")
        object.__setattr__(self, "route", validate_route(self.route))
        if isinstance(self.routers, str):
            object.__setattr__(self, "routers", (self.routers,))
        object.__setattr__(self, "routers", tuple(self.routers))
        dns = (self.router_dns,) if isinstance(self.router_dns, str) else self.router_dns
        object.__setattr__(self, "router_dns", tuple(dns or ()))
        self._check_routers()
        if isinstance(self.target, str):
            check_url("target", self.target, ("http", "https"), "http://127.0.0.1:5000")
        elif not callable(self.target) and not hasattr(self.target, "send"):
            raise ValueError(
                f"target must be an http:// or https:// URL or a WSGI callable, got {self.target!r}"
            )
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key must be given together")
        for name in ("ca_file", "client_cert", "client_key", "target_ca_file"):
            check_file(name, getattr(self, name))
        protocols = tuple(p.lower().removeprefix("cranker_") for p in self.protocols)
        if not protocols:
            raise ValueError("protocols must offer at least one version")
        for p in protocols:
            if p not in SUPPORTED_PROTOCOLS:
                raise ValueError(f"unsupported protocol {p!r}; supported: {SUPPORTED_PROTOCOLS}")
        object.__setattr__(self, "protocols", protocols)
        self._check_numbers()

    def _check_routers(self) -> None:
        if not self.routers and not self.router_dns and self.router_source is None:
            raise ValueError("routers: required: give a router URL (--router "
                             "ws://127.0.0.1:9070) or a name to look routers up (--router-dns)")
        for url in self.routers:
            check_url("routers", url, ("ws", "wss"), "ws://127.0.0.1:9070")
        for url in self.router_dns:
            check_url("router_dns", url, ("ws", "wss"), "wss://routers.internal:9070")
        if self.router_source is not None and not callable(self.router_source):
            raise ValueError("router_source must be a callable returning router URLs")
        if self.dns_server:
            host, _, port = self.dns_server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"dns_server: {self.dns_server!r} must be host:port, "
                                 "e.g. 10.0.0.2:53")

    def _check_numbers(self) -> None:
        for name in ("ping_interval", "connect_timeout", "idle_timeout", "router_refresh"):
            check_positive(name, getattr(self, name))
        for name, minimum in (("sliding_window", 1), ("v3_workers", 1), ("v3_sockets", 1),
                              ("chunk_size", 1024)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be at least {minimum}")
