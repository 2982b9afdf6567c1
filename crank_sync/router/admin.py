"""Admin endpoints, served on the registration port only (never the client port).

``GET /health``, ``/health/connectors``, ``/api/registrations``, ``/api/dark-mode``,
``/api/stats``, ``/api/timeseries``, ``/metrics`` and ``/`` (the dashboard); ``PUT``/``DELETE
/api/dark-mode/<ip>``. All but ``/health`` and the dashboard page itself (which holds no
data: it asks for the admin token and sends it on its requests) need the admin token.
"""
from __future__ import annotations

import ipaddress
import json
import time
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .metrics import socket_counts

if TYPE_CHECKING:
    from .core import RouterCore
    from .pool import ConnectorSocket

Response = tuple[int, str, bytes]


def _json(status: int, value: Any) -> Response:
    return status, "application/json", (json.dumps(value, indent=1) + "\n").encode()


def health(core: RouterCore) -> Response:
    snapshot = core.registry.snapshot()
    sockets = sum(len(g["idle"]) + len(g["busy"]) + len(g["v3"]) for g in snapshot.values())
    body = {
        "status": "draining" if core.draining else "ok",
        "version": __version__,
        "uptime_s": round(time.monotonic() - core.started_at, 3),
        "routes": len(snapshot),
        "sockets": sockets,
        "requests_waiting": core.registry.waiting,
        "dark_mode": core.registry.dark_ips(),
    }
    return _json(503 if core.draining else 200, body)


def connectors(core: RouterCore) -> Response:
    """Registrations in the shape mu-cranker-router's users know."""
    dark = set(core.registry.dark_ips())
    services: dict[str, Any] = {}
    by_route: dict[str, list[ConnectorSocket]] = defaultdict(list)
    for key, groups in core.registry.snapshot().items():
        # sockets registered for a Domain are listed under their route, as mu-cranker-router
        # lists them (the registry groups them by domain for routing)
        sockets = (*groups["idle"], *groups["busy"], *groups["v3"])
        if not key.startswith("domain:"):
            by_route.setdefault(key, [])  # a route kept without sockets is listed, empty
        for sock in sockets:
            by_route[sock.route].append(sock)
    for route, route_sockets in by_route.items():
        by_instance: dict[str, dict[str, Any]] = {}
        for sock in route_sockets:
            entry = by_instance.setdefault(sock.connector_instance_id, {
                "connectorInstanceID": sock.connector_instance_id,
                "ip": sock.remote_ip,
                "componentName": sock.component_name,
                "darkMode": sock.remote_ip in dark,
                "registeredSince": _since(core, sock),
                "connections": [],
            })
            entry["connections"].append({
                "socketID": sock.socket_id,
                "port": sock.remote_port,
                "protocol": sock.protocol,
                "inflight": sock.inflight,
            })
        component = next((c["componentName"] for c in by_instance.values()), "")
        services[route] = {
            "name": route,
            "componentName": component,
            "isCatchAll": route == "*",
            "connectors": list(by_instance.values()),
        }
    return _json(200, {"services": services})


def _since(core: RouterCore, sock: ConnectorSocket) -> float:
    """When the socket's connector instance first registered for its route (epoch seconds)."""
    since = core.metrics.recent.since(sock.route, sock.connector_instance_id)
    return round(sock.registered_at if since is None else since, 3)


def registrations(core: RouterCore) -> Response:
    """Registrations as ``{route: {ip: {...}}}``, the shape crank4go's users know."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for route, groups in core.registry.snapshot().items():
        for state in ("idle", "busy", "v3"):
            for sock in groups[state]:
                entry = out[route].setdefault(sock.remote_ip, {
                    "componentName": sock.component_name,
                    "connectorInstanceIDs": [],
                    "idleSockets": 0,
                    "busySockets": 0,
                    "protocols": [],
                })
                if sock.connector_instance_id not in entry["connectorInstanceIDs"]:
                    entry["connectorInstanceIDs"].append(sock.connector_instance_id)
                if sock.protocol not in entry["protocols"]:
                    entry["protocols"].append(sock.protocol)
                busy = sock.inflight > 0
                entry["busySockets" if busy else "idleSockets"] += 1
    return _json(200, out)


def dark_mode(core: RouterCore) -> Response:
    return _json(200, {"darkModeHosts": core.registry.dark_ips()})


def set_dark_mode(core: RouterCore, ip_text: str, dark: bool) -> Response:
    try:
        ip = str(ipaddress.ip_address(ip_text))
    except ValueError:
        return _json(400, {"error": f"not an IP address: {ip_text[:100]!r}"})
    core.registry.set_dark(ip, dark)
    return dark_mode(core)


def stats(core: RouterCore) -> Response:
    by_route, failed = core.metrics.totals()
    return _json(200, {
        "uptime_s": round(time.monotonic() - core.started_at, 3),
        "requests_by_route": by_route,
        "requests_total": sum(by_route.values()),
        "failed_total": failed,
        "requests_waiting": core.registry.waiting,
        "websockets_open": (websockets := core.metrics.open_websockets()),
        "websockets_open_total": sum(websockets.values()),
        "sockets": {
            route: {f"{p}/{s}": n for (p, s), n in counts.items()}
            for route, counts in socket_counts(core.registry).items()
        },
        "dark_mode": core.registry.dark_ips(),
        **limit_stats(core),
    })


def limit_stats(core: RouterCore) -> dict[str, Any]:
    """Requests refused by the limits (``{route: {reason: n}}``) and, for capped routes,
    the requests in flight and queued now."""
    rejected = core.metrics.rejected_by_route()
    slots = core.limiter.slots.counts() if core.limiter is not None else {}
    return {
        "rejected": rejected,
        "rejected_total": sum(sum(reasons.values()) for reasons in rejected.values()),
        "limits": {route: {"in_flight": n, "queued": q} for route, (n, q) in sorted(slots.items())},
    }


def route_states(core: RouterCore) -> dict[str, dict[str, Any]]:
    """``{route: {"state": "up"|"down", "sockets": n, "lastSeen": epoch s or None}}``.

    A route is down while the registry keeps it without a socket (``route_keep_time`` after
    its last connector left); then it is gone from here too.
    """
    recent = core.metrics.recent.routes()
    out: dict[str, dict[str, Any]] = {}
    for route, groups in core.registry.snapshot().items():
        sockets = sum(len(g) for g in groups.values())
        out[route] = {"state": "up" if sockets else "down", "sockets": sockets,
                      "lastSeen": recent.get(route)}
    return dict(sorted(out.items()))


def timeseries(core: RouterCore, query: dict[str, str]) -> Response:
    """The dashboard's charts: ``?minutes=`` (default and at most 15) of per-route buckets."""
    try:
        minutes = float(query.get("minutes", "15"))
        if not 0 < minutes <= 15:
            raise ValueError
    except ValueError:
        return _json(400, {"error": "minutes must be a number in (0, 15]"})
    body = core.metrics.timeseries.series(minutes)
    body["states"] = route_states(core)
    return _json(200, body)


def metrics(core: RouterCore) -> Response:
    body, content_type = core.metrics.render()
    return 200, content_type, body


def dashboard(core: RouterCore) -> Response:
    page = resources.files("crank_sync.router").joinpath("dashboard.html").read_bytes()
    return 200, "text/html; charset=utf-8", page


#: Served without the admin token.
PUBLIC = frozenset({"/", "/health"})

GET_ROUTES: dict[str, Callable[[RouterCore], Response]] = {
    "/": dashboard,
    "/health": health,
    "/health/connectors": connectors,
    "/api/registrations": registrations,
    "/api/dark-mode": dark_mode,
    "/api/stats": stats,
    "/metrics": metrics,
}

GET_QUERY_ROUTES: dict[str, Callable[[RouterCore, dict[str, str]], Response]] = {
    "/api/timeseries": timeseries,
}
