"""Router metrics, produced with prometheus_client on a registry of the router's own."""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .pool import ConnectorSocket, SocketRegistry
from .timeseries import RouteMemory, TimeSeries

#: The route label of a request to no route of this router (a 404, a bad request).
UNROUTED = "(none)"
_WS_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _SocketCollector(Collector):
    """Socket gauges read from the registry at scrape time, so they are never stale."""

    def __init__(self, sockets: SocketRegistry) -> None:
        self._sockets = sockets

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("crank_sockets", "Connector sockets by route, protocol, state",
                                  labels=["route", "protocol", "state"])
        for route, counts in socket_counts(self._sockets).items():
            for (protocol, state), n in counts.items():
                gauge.add_metric([route, protocol, state], n)
        yield gauge
        waiting = GaugeMetricFamily("crank_requests_waiting",
                                    "Client requests waiting for a connector socket")
        waiting.add_metric([], self._sockets.waiting)
        yield waiting


def socket_counts(sockets: SocketRegistry) -> dict[str, dict[tuple[str, str], int]]:
    """``{route: {(protocol, "idle"|"busy"): n}}``; a v3 socket is busy while it has streams."""
    out: dict[str, dict[tuple[str, str], int]] = {}
    for route, groups in sockets.snapshot().items():
        counts: dict[tuple[str, str], int] = defaultdict(int)
        if groups["idle"]:
            counts[("cranker_1.0", "idle")] += len(groups["idle"])
        for sock in groups["busy"]:
            counts[(sock.protocol, "busy")] += 1
        for sock in groups["v3"]:
            busy = sock.session is not None and sock.session.inflight > 0
            counts[("cranker_3.0", "busy" if busy else "idle")] += 1
        out[route] = dict(counts)
    return out


class RouterMetrics:
    """Counters the proxy and the registration handler update, and their exposition."""

    def __init__(self, sockets: SocketRegistry) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("crank_requests", "Proxied requests by route and status class",
                                ["route", "status_class"], registry=r)
        self.duration = Histogram("crank_request_duration_seconds",
                                  "Time from request head to the end of the response",
                                  ["route"], buckets=_BUCKETS, registry=r)
        self.body_bytes = Counter("crank_body_bytes", "Body bytes proxied, by direction",
                                  ["route", "direction"], registry=r)
        self.registrations = Counter("crank_registrations", "Connector sockets registered",
                                     ["protocol"], registry=r)
        self.deregistrations = Counter("crank_deregistrations",
                                       "Deregistration requests from connectors", registry=r)
        self.errors = Counter("crank_errors", "Failed requests by kind", ["kind"], registry=r)
        self.retries = Counter("crank_retries", "Requests retried on another v1 socket after "
                               "theirs closed unanswered", ["route"], registry=r)
        self.aborted = Counter("crank_requests_aborted",
                               "Requests cut short (client gone, connector lost, idle timeout)",
                               ["route", "reason"], registry=r)
        self.rejections = Counter("crank_requests_rejected",
                                  "Requests refused by a rate limit or concurrency cap, by "
                                  "route and reason (rate_limit, concurrency, queue_timeout)",
                                  ["route", "reason"], registry=r)
        self.websockets = Gauge("crank_websockets_open", "Websockets open through the tunnel",
                                ["route"], registry=r)
        self.websocket_seconds = Histogram("crank_websocket_duration_seconds",
                                           "How long websockets through the tunnel stayed open",
                                           ["route"], buckets=_WS_BUCKETS, registry=r)
        self._rejected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        r.register(_SocketCollector(sockets))
        self._sockets = sockets
        self._lock = threading.Lock()
        self._by_route: dict[str, int] = defaultdict(int)
        self._failed = 0
        #: The last 15 minutes per route, and the routes seen lately: for the dashboard.
        self.timeseries = TimeSeries()
        self.recent = RouteMemory()

    def label(self, route: str) -> str:
        """``route`` when the router has that route, else ``(none)``: the paths clients make
        up (a scan of random ones) add no series to the metrics and no keys to the
        dashboard's tables."""
        return route if self._sockets.known(route) else UNROUTED

    def websocket_opened(self, route: str) -> None:
        self.websockets.labels(route).inc()

    def websocket_closed(self, route: str, seconds: float) -> None:
        """A websocket ended; its bytes count in ``crank_body_bytes`` with the route's others
        (the exchange's ``observe``)."""
        self.websockets.labels(route).dec()
        self.websocket_seconds.labels(route).observe(seconds)

    def open_websockets(self) -> dict[str, int]:
        """Websockets open now, by route (for the admin API and the dashboard)."""
        return {s.labels["route"]: int(s.value) for m in self.websockets.collect()
                for s in m.samples if s.value}

    def connector_seen(self, sock: ConnectorSocket) -> None:
        """A connector socket was registered, or has just closed."""
        self.recent.seen(sock.route, sock.connector_instance_id)

    def observe(self, route: str, status: int, seconds: float, bytes_in: int,
                bytes_out: int, error: str | None, aborted: str | None = None) -> None:
        """Count one request; an ``aborted`` one (the reason) has status class ``aborted``,
        whatever status had gone out."""
        route = self.label(route)
        if aborted:
            self.requests.labels(route, "aborted").inc()
            self.aborted.labels(route, aborted).inc()
        else:
            self.requests.labels(route, f"{status // 100}xx" if status else "none").inc()
        self.duration.labels(route).observe(seconds)
        if bytes_in:
            self.body_bytes.labels(route, "in").inc(bytes_in)
        if bytes_out:
            self.body_bytes.labels(route, "out").inc(bytes_out)
        if error:
            self.errors.labels(error).inc()
        self.timeseries.record(route, status, seconds, bytes_in, bytes_out)
        with self._lock:
            self._by_route[route] += 1
            if error:
                self._failed += 1

    def rejected(self, route: str, reason: str) -> None:
        """A limit refused a request of ``route`` (reason: rate_limit, concurrency or
        queue_timeout)."""
        route = self.label(route)
        self.rejections.labels(route, reason).inc()
        with self._lock:
            self._rejected[route][reason] += 1

    def rejected_by_route(self) -> dict[str, dict[str, int]]:
        """``{route: {reason: n}}``, for the admin API and the dashboard."""
        with self._lock:
            return {route: dict(reasons) for route, reasons in sorted(self._rejected.items())}

    def totals(self) -> tuple[dict[str, int], int]:
        """Requests per route and failed requests, for the dashboard's rates."""
        with self._lock:
            return dict(self._by_route), self._failed

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
