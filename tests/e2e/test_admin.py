"""Admin endpoints on the registration port: health, registrations, stats, metrics, dark mode,
the access log and X-Request-Id.

Everything runs against a real router, real connectors and the conftest target service.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import (
    LOOPBACK,
    admin_url,
    both_protocols,
    client_url,
    closed_port,
    deterministic_bytes,
    single_protocols,
    wait_for,
)

import crank_sync

ADMIN_GET_PATHS = [
    "/health",
    "/health/connectors",
    "/api/registrations",
    "/api/dark-mode",
    "/api/stats",
    "/metrics",
]


@pytest.fixture
def http(session: requests.Session) -> requests.Session:
    return session


def admin_json(router: Any, path: str) -> Any:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(admin_url(router, path), timeout=10)
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
    return resp.json()


def expected_protocol(cranker_protocols: tuple[str, ...]) -> str:
    return f"cranker_{cranker_protocols[0]}"


def metric_samples(router: Any) -> dict[str, list[Any]]:
    """``{family name: [samples]}`` from /metrics, parsed with prometheus_client's parser."""
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(admin_url(router, "/metrics"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain"), resp.headers
    return {f.name: list(f.samples) for f in text_string_to_metric_families(resp.text)}


def sample_value(samples: dict[str, list[Any]], sample_name: str, **labels: str) -> float | None:
    """The value of the one sample named ``sample_name`` whose labels include ``labels``."""
    found = [
        s.value
        for family in samples.values()
        for s in family
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, f"{sample_name}{labels} is ambiguous: {found}"
    return found[0] if found else None


class HeldRequest:
    """A ``/svc/slow`` request held at the target on its own thread until ``target.release``."""

    def __init__(self, router: Any, target: Any, route: str = "svc") -> None:
        self.result: dict[str, Any] = {}
        self._path = f"/{route}/slow"
        self._thread = threading.Thread(
            target=self._run, args=(client_url(router, self._path + "?seconds=30"),),
            name="test-held-request",
        )
        self._thread.start()
        wait_for(lambda: target.received_for(self._path), what="held request at the target")

    def _run(self, url: str) -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                self.result["resp"] = s.get(url, timeout=40)
        except Exception as err:  # reported by finish()
            self.result["error"] = err

    def finish(self) -> requests.Response:
        self._thread.join(30)
        assert not self._thread.is_alive(), "held request did not finish"
        assert "resp" in self.result, f"held request failed: {self.result.get('error')!r}"
        return self.result["resp"]


@pytest.fixture
def held(router: Any, target: Any) -> Iterator[list[HeldRequest]]:
    """Held requests are released at teardown even when the test fails."""
    started: list[HeldRequest] = []
    yield started
    target.release.set()
    for h in started:
        h._thread.join(30)


# --------------------------------------------------------------------------- /health


def test_health_ok_while_serving(router, http):
    resp = http.get(admin_url(router, "/health"), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == "ok"
    assert body["version"] == crank_sync.__version__
    assert isinstance(body["uptime_s"], (int, float)) and body["uptime_s"] >= 0
    assert body["routes"] == 0 and body["sockets"] == 0
    assert body["requests_waiting"] == 0
    assert body["dark_mode"] == []


@single_protocols
def test_health_counts_routes_and_sockets(router, target, connector_factory):
    connector_factory(target, route="svc", sliding_window=2)
    connector_factory(target, route="other", sliding_window=1)
    body = admin_json(router, "/health")
    assert body["status"] == "ok"
    assert body["routes"] == 2
    assert body["sockets"] == 3


# --------------------------------------------------------------------------- /health/connectors


@single_protocols
def test_health_connectors_shape_and_inflight(router, target, connector_factory, held,
                                              cranker_protocols):
    conn = connector_factory(target, route="svc", sliding_window=2, component_name="svc-comp")
    protocol = expected_protocol(cranker_protocols)

    services = admin_json(router, "/health/connectors")["services"]
    assert list(services) == ["svc"]
    svc = services["svc"]
    assert svc["name"] == "svc"
    assert svc["componentName"] == "svc-comp"
    assert svc["isCatchAll"] is False
    assert len(svc["connectors"]) == 1
    entry = svc["connectors"][0]
    assert entry["connectorInstanceID"] == conn.connector_instance_id
    assert entry["ip"] == LOOPBACK
    assert entry["componentName"] == "svc-comp"
    assert entry["darkMode"] is False
    assert len(entry["connections"]) == 2
    for c in entry["connections"]:
        assert set(c) == {"socketID", "port", "protocol", "inflight"}
        assert isinstance(c["socketID"], str) and c["socketID"]
        assert isinstance(c["port"], int) and 0 < c["port"] < 65536
        assert c["protocol"] == protocol
        assert c["inflight"] == 0
    assert len({c["socketID"] for c in entry["connections"]}) == 2

    held.append(HeldRequest(router, target))

    def inflight() -> list[int]:
        svc = admin_json(router, "/health/connectors")["services"]["svc"]
        return [c["inflight"] for e in svc["connectors"] for c in e["connections"]]

    counts = wait_for(lambda: inflight() if sum(inflight()) == 1 else None,
                      what="one request in flight in /health/connectors")
    assert sorted(counts)[-1] == 1
    target.release.set()
    assert held[0].finish().status_code == 200
    wait_for(lambda: sum(inflight()) == 0, what="nothing in flight after the response")


def test_health_connectors_catch_all(router, target, connector_factory):
    conn = connector_factory(target, route="*", sliding_window=1, component_name="fallback")
    services = admin_json(router, "/health/connectors")["services"]
    assert services["*"]["isCatchAll"] is True
    assert services["*"]["name"] == "*"
    assert services["*"]["connectors"][0]["connectorInstanceID"] == conn.connector_instance_id


def test_health_connectors_two_connectors_on_one_route(router, target, connector_factory):
    a = connector_factory(target, route="svc", sliding_window=1, component_name="c")
    b = connector_factory(target, route="svc", sliding_window=1, component_name="c",
                          wait=False)
    wait_for(lambda: router.idle_sockets("svc") >= 2, what="both connectors registered")
    svc = admin_json(router, "/health/connectors")["services"]["svc"]
    ids = sorted(e["connectorInstanceID"] for e in svc["connectors"])
    assert ids == sorted([a.connector_instance_id, b.connector_instance_id])


# --------------------------------------------------------------------------- /api/registrations


@single_protocols
def test_api_registrations_shape(router, target, connector_factory, held, cranker_protocols):
    conn = connector_factory(target, route="svc", sliding_window=2, component_name="svc-comp")
    body = admin_json(router, "/api/registrations")
    assert list(body) == ["svc"]
    assert list(body["svc"]) == [LOOPBACK]
    entry = body["svc"][LOOPBACK]
    assert entry["componentName"] == "svc-comp"
    assert entry["connectorInstanceIDs"] == [conn.connector_instance_id]
    assert entry["protocols"] == [expected_protocol(cranker_protocols)]
    assert entry["idleSockets"] == 2 and entry["busySockets"] == 0

    held.append(HeldRequest(router, target))
    wait_for(lambda: admin_json(router, "/api/registrations")["svc"][LOOPBACK]["busySockets"] == 1,
             what="one busy socket in /api/registrations")
    target.release.set()
    assert held[0].finish().status_code == 200


# --------------------------------------------------------------------------- /api/stats


@single_protocols
def test_api_stats_counts_requests_and_sockets(router, target, connector_factory, http,
                                               cranker_protocols):
    connector_factory(target, route="svc", sliding_window=2)
    protocol = expected_protocol(cranker_protocols)
    for i in range(3):
        assert http.get(client_url(router, f"/svc/bytes/10?seed={i}"), timeout=10).status_code == 200
    assert http.get(client_url(router, "/nowhere/x"), timeout=10).status_code == 404

    def stats() -> dict[str, Any]:
        return admin_json(router, "/api/stats")

    body = wait_for(lambda: (s := stats())["requests_total"] == 4 and s,
                    what="4 requests in /api/stats")
    assert body["requests_by_route"]["svc"] == 3
    assert body["failed_total"] == 1
    assert body["requests_waiting"] == 0
    assert body["dark_mode"] == []
    assert body["uptime_s"] >= 0
    wait_for(lambda: stats()["sockets"]["svc"].get(f"{protocol}/idle") == 2,
             what=f"2 idle {protocol} sockets in /api/stats")


# --------------------------------------------------------------------------- not on the client port


@pytest.mark.parametrize("path", ADMIN_GET_PATHS + ["/"])
def test_admin_endpoints_not_served_on_client_port(router, http, path):
    resp = http.get(client_url(router, path), timeout=10)
    assert resp.status_code == 404, resp.text
    assert "status" not in resp.text and "crank_requests" not in resp.text


def test_client_port_health_is_proxied_to_the_health_route(router, target, connector_factory,
                                                           http):
    """``/health`` on the client port is an ordinary request for route ``health``."""
    connector_factory(target, route="health", sliding_window=1)
    resp = http.get(client_url(router, "/health"), timeout=10)
    assert resp.headers.get("X-Target-Name") == "target"
    assert [r.path for r in target.received] == ["/health"]


def test_dark_mode_cannot_be_set_on_client_port(router, http):
    resp = http.put(client_url(router, "/api/dark-mode/127.0.0.1"), timeout=10)
    assert resp.status_code == 404
    assert admin_json(router, "/api/dark-mode") == {"darkModeHosts": []}


# --------------------------------------------------------------------------- /metrics


@single_protocols
def test_metrics_families_labels_and_values(router, target, connector_factory, http,
                                            cranker_protocols):
    conn = connector_factory(target, route="svc", sliding_window=2)
    protocol = expected_protocol(cranker_protocols)
    upload = deterministic_bytes(3000, 7)
    assert http.get(client_url(router, "/svc/bytes/1000"), timeout=10).status_code == 200
    assert http.get(client_url(router, "/svc/bytes/500?seed=2"), timeout=10).status_code == 200
    echo = http.post(client_url(router, "/svc/echo"), data=upload, timeout=10)
    assert echo.status_code == 200 and echo.content == upload
    missing = http.get(client_url(router, "/svc/status/404"), timeout=10)
    assert missing.status_code == 404
    assert http.get(client_url(router, "/unrouted/x"), timeout=10).status_code == 404
    missing_len = len(missing.content)

    # the router records a request after its response has gone out: wait for all five
    samples = wait_for(
        lambda: (m := metric_samples(router))
        and sample_value(m, "crank_request_duration_seconds_count", route="svc") == 4
        and sample_value(m, "crank_errors_total", kind="NoRoute") == 1 and m,
        what="4 svc requests in crank_request_duration_seconds and 1 NoRoute error",
    )
    for family in ("crank_requests", "crank_request_duration_seconds", "crank_body_bytes",
                   "crank_sockets", "crank_requests_waiting", "crank_registrations",
                   "crank_deregistrations", "crank_errors"):
        assert family in samples, f"{family} missing from /metrics: {sorted(samples)}"

    assert sample_value(samples, "crank_requests_total", route="svc", status_class="2xx") == 3
    assert sample_value(samples, "crank_requests_total", route="svc", status_class="4xx") == 1
    assert sample_value(samples, "crank_errors_total", kind="NoRoute") == 1

    buckets = [s for s in samples["crank_request_duration_seconds"]
               if s.name == "crank_request_duration_seconds_bucket"
               and s.labels["route"] == "svc"]
    assert {s.labels["le"] for s in buckets} >= {"0.005", "1.0", "+Inf"}
    assert [s.value for s in buckets if s.labels["le"] == "+Inf"] == [4]
    assert sample_value(samples, "crank_request_duration_seconds_sum", route="svc") > 0

    assert sample_value(samples, "crank_body_bytes_total", route="svc", direction="in") == 3000
    out = 1000 + 500 + 3000 + missing_len
    assert sample_value(samples, "crank_body_bytes_total", route="svc", direction="out") == out

    assert sample_value(samples, "crank_registrations_total", protocol=protocol) >= 2
    assert sample_value(samples, "crank_deregistrations_total") == 0
    assert sample_value(samples, "crank_requests_waiting") == 0
    wait_for(
        lambda: sample_value(metric_samples(router), "crank_sockets", route="svc",
                             protocol=protocol, state="idle") == 2,
        what=f"crank_sockets idle {protocol} == 2",
    )

    connector_factory.stop(conn, timeout=10)
    samples = wait_for(
        lambda: (m := metric_samples(router))
        and sample_value(m, "crank_deregistrations_total") == 1 and m,
        what="one deregistration counted",
    )
    wait_for(
        lambda: not sample_value(metric_samples(router), "crank_sockets", route="svc",
                                 protocol=protocol, state="idle"),
        what="no idle sockets after the connector stopped",
    )


@single_protocols
def test_metrics_busy_sockets_during_a_held_request(router, target, connector_factory, held,
                                                    cranker_protocols):
    connector_factory(target, route="svc", sliding_window=2)
    protocol = expected_protocol(cranker_protocols)
    held.append(HeldRequest(router, target))
    wait_for(lambda: sample_value(metric_samples(router), "crank_sockets", route="svc",
                                  protocol=protocol, state="busy") == 1,
             what=f"one busy {protocol} socket in crank_sockets")
    target.release.set()
    assert held[0].finish().status_code == 200
    wait_for(lambda: not sample_value(metric_samples(router), "crank_sockets", route="svc",
                                      protocol=protocol, state="busy"),
             what="no busy socket after the response")


# --------------------------------------------------------------------------- dark mode


def put_dark(http: requests.Session, router: Any, ip: str) -> requests.Response:
    return http.put(admin_url(router, f"/api/dark-mode/{ip}"), timeout=10)


def delete_dark(http: requests.Session, router: Any, ip: str) -> requests.Response:
    return http.delete(admin_url(router, f"/api/dark-mode/{ip}"), timeout=10)


@both_protocols
@pytest.mark.parametrize("router", [{"connector_max_wait": 0.5}], indirect=True)
def test_dark_mode_takes_connectors_out_of_rotation(router, target, connector_factory, http):
    conn = connector_factory(target, route="svc", sliding_window=2)
    assert http.get(client_url(router, "/svc/bytes/10"), timeout=10).status_code == 200

    resp = put_dark(http, router, LOOPBACK)
    assert resp.status_code == 200
    assert resp.json() == {"darkModeHosts": [LOOPBACK]}
    assert admin_json(router, "/api/dark-mode") == {"darkModeHosts": [LOOPBACK]}
    assert admin_json(router, "/health")["dark_mode"] == [LOOPBACK]

    # still registered, shown as dark, but given no requests
    wait_for(lambda: router.idle_sockets("svc") >= 2, what="dark connector still registered")
    entry = admin_json(router, "/health/connectors")["services"]["svc"]["connectors"][0]
    assert entry["connectorInstanceID"] == conn.connector_instance_id
    assert entry["darkMode"] is True
    before = len(target.received_for("/svc/"))
    for _ in range(2):
        assert http.get(client_url(router, "/svc/bytes/10"), timeout=10).status_code == 503
    assert len(target.received_for("/svc/")) == before
    assert router.idle_sockets("svc") >= 2

    resp = delete_dark(http, router, LOOPBACK)
    assert resp.status_code == 200
    assert resp.json() == {"darkModeHosts": []}
    assert admin_json(router, "/api/dark-mode") == {"darkModeHosts": []}
    resp = http.get(client_url(router, "/svc/bytes/20?seed=3"), timeout=10)
    assert resp.status_code == 200 and resp.content == deterministic_bytes(20, 3)
    entry = admin_json(router, "/health/connectors")["services"]["svc"]["connectors"][0]
    assert entry["darkMode"] is False


@pytest.mark.parametrize("router", [{"connector_max_wait": 30.0}], indirect=True)
def test_request_waiting_on_dark_route_is_counted_and_served_when_light(router, target,
                                                                        connector_factory,
                                                                        http):
    connector_factory(target, route="svc", sliding_window=1)
    assert put_dark(http, router, LOOPBACK).status_code == 200
    result: dict[str, Any] = {}

    def request() -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                result["resp"] = s.get(client_url(router, "/svc/bytes/33?seed=4"), timeout=40)
        except Exception as err:
            result["error"] = err

    thread = threading.Thread(target=request, name="test-waiting-request")
    thread.start()
    try:
        wait_for(lambda: admin_json(router, "/health")["requests_waiting"] == 1,
                 what="one request waiting in /health")
        assert admin_json(router, "/api/stats")["requests_waiting"] == 1
        assert sample_value(metric_samples(router), "crank_requests_waiting") == 1
        assert not target.received_for("/svc/bytes")
    finally:
        assert delete_dark(http, router, LOOPBACK).status_code == 200
        thread.join(20)
    assert "resp" in result, f"waiting request failed: {result.get('error')!r}"
    assert result["resp"].status_code == 200
    assert result["resp"].content == deterministic_bytes(33, 4)
    assert admin_json(router, "/health")["requests_waiting"] == 0


def test_dark_mode_other_ip_does_not_affect_local_connector(router, target, connector_factory,
                                                            http):
    connector_factory(target, route="svc", sliding_window=1)
    assert put_dark(http, router, "10.1.2.3").json() == {"darkModeHosts": ["10.1.2.3"]}
    assert put_dark(http, router, "::1").json() == {"darkModeHosts": ["10.1.2.3", "::1"]}
    assert http.get(client_url(router, "/svc/bytes/5"), timeout=10).status_code == 200
    entry = admin_json(router, "/health/connectors")["services"]["svc"]["connectors"][0]
    assert entry["darkMode"] is False
    assert delete_dark(http, router, "10.1.2.3").json() == {"darkModeHosts": ["::1"]}


@pytest.mark.parametrize("bad", ["not-an-ip", "999.1.1.1", "1.2.3", "127.0.0.1%2Fx", ""])
def test_dark_mode_invalid_ip_is_400(router, http, bad):
    for method in (http.put, http.delete):
        resp = method(admin_url(router, f"/api/dark-mode/{bad}"), timeout=10)
        assert resp.status_code == 400, (method, resp.status_code, resp.text)
        assert "error" in resp.json()
    assert admin_json(router, "/api/dark-mode") == {"darkModeHosts": []}


# --------------------------------------------------------------------------- access log

ACCESS_RE = re.compile(
    r'^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (?P<client>\S+) "(?P<method>\S+) (?P<path>\S+)"'
    r" route=(?P<route>\S+) status=(?P<status>\S+) outcome=(?P<outcome>\S+) in=(?P<bytes_in>\d+) out=(?P<bytes_out>\d+)"
    r" (?P<ms>[\d.]+)ms connector=(?P<connector>\S+) protocol=(?P<protocol>\S+)"
    r" request_id=(?P<request_id>\S+) retries=(?P<retries>\d+)$"
)


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[re.Match[str]]:
    out = []
    for rec in caplog.records:
        if rec.name == "crank_sync.access" and f"request_id={request_id}" in rec.getMessage():
            match = ACCESS_RE.match(rec.getMessage())
            assert match, f"access line does not parse: {rec.getMessage()!r}"
            assert rec.levelno == logging.INFO
            out.append(match)
    return out


@single_protocols
def test_access_log_line_per_request(router, target, connector_factory, http, caplog,
                                     cranker_protocols):
    caplog.set_level(logging.INFO, logger="crank_sync.access")
    conn = connector_factory(target, route="svc", sliding_window=2)
    upload = deterministic_bytes(1234, 9)
    resp = http.post(client_url(router, "/svc/echo?x=1"), data=upload,
                     headers={"X-Request-Id": "access-test-1"}, timeout=10)
    assert resp.status_code == 200 and resp.content == upload

    lines = wait_for(lambda: access_lines(caplog, "access-test-1"), what="access log line")
    assert len(lines) == 1
    line = lines[0]
    assert line["client"] == LOOPBACK
    assert line["method"] == "POST"
    assert line["path"] == "/svc/echo?x=1"
    assert line["route"] == "svc"
    assert line["status"] == "200" and line["outcome"] == "ok"
    assert line["bytes_in"] == "1234"
    assert line["bytes_out"] == "1234"
    assert float(line["ms"]) >= 0
    assert line["connector"] == conn.connector_instance_id
    assert line["protocol"] == expected_protocol(cranker_protocols)
    assert line["retries"] == "0"


def test_access_log_line_for_unrouted_request(router, http, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync.access")
    resp = http.get(client_url(router, "/nowhere/a"), headers={"X-Request-Id": "no-route-1"},
                    timeout=10)
    assert resp.status_code == 404
    lines = wait_for(lambda: access_lines(caplog, "no-route-1"), what="access log line")
    assert len(lines) == 1
    assert lines[0]["status"] == "404" and lines[0]["path"] == "/nowhere/a"
    assert lines[0]["outcome"] == "error"
    assert lines[0]["connector"] == "-" and lines[0]["protocol"] == "-"


# --------------------------------------------------------------------------- X-Request-Id


@both_protocols
def test_request_id_kept_passed_and_returned(router, target, connector_factory, http, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync.access")
    connector_factory(target, route="svc", sliding_window=2)
    resp = http.get(client_url(router, "/svc/headers/a"),
                    headers={"X-Request-Id": "client-id-42"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["X-Request-Id"] == "client-id-42"
    received = target.received_for("/svc/headers/a")
    assert len(received) == 1
    assert received[0].header_values("X-Request-Id") == ["client-id-42"]
    assert len(wait_for(lambda: access_lines(caplog, "client-id-42"), what="access line")) == 1


@both_protocols
def test_request_id_generated_when_missing(router, target, connector_factory, http, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync.access")
    connector_factory(target, route="svc", sliding_window=2)
    ids = []
    for i in range(2):
        resp = http.get(client_url(router, f"/svc/headers/gen{i}"), timeout=10)
        assert resp.status_code == 200
        rid = resp.headers["X-Request-Id"]
        assert re.fullmatch(r"[A-Za-z0-9._:/+=@-]{8,128}", rid), rid
        assert target.received_for(f"/svc/headers/gen{i}")[0].header_values("X-Request-Id") == [rid]
        assert len(wait_for(lambda rid=rid: access_lines(caplog, rid), what="access line")) == 1
        ids.append(rid)
    assert ids[0] != ids[1]


def test_request_id_unusable_value_is_replaced(router, target, connector_factory, http):
    connector_factory(target, route="svc", sliding_window=1)
    resp = http.get(client_url(router, "/svc/headers/bad"),
                    headers={"X-Request-Id": "bad id\twith spaces"}, timeout=10)
    assert resp.status_code == 200
    rid = resp.headers["X-Request-Id"]
    assert rid != "bad id\twith spaces" and " " not in rid
    assert target.received_for("/svc/headers/bad")[0].header_values("X-Request-Id") == [rid]


def test_request_id_on_router_error_responses(router, http):
    resp = http.get(client_url(router, "/nowhere/x"), headers={"X-Request-Id": "err-1"},
                    timeout=10)
    assert resp.status_code == 404
    assert resp.headers["X-Request-Id"] == "err-1"
    resp = http.get(client_url(router, "/nowhere/y"), timeout=10)
    assert resp.headers.get("X-Request-Id")


@both_protocols
def test_request_id_in_router_and_connector_log_lines(router, connector_factory, http, caplog):
    """Every router and connector log line about a request names its request id.

    The target is unreachable, so both the connector (target failed) and the router (502)
    log about this request.
    """
    caplog.set_level(logging.DEBUG, logger="crank_sync")
    connector_factory(f"http://{LOOPBACK}:{closed_port()}", route="svc", sliding_window=1)
    path = "/svc/unreachable-target-zq7"
    resp = http.get(client_url(router, path), headers={"X-Request-Id": "corr-77"}, timeout=20)
    assert resp.status_code == 502
    assert resp.headers["X-Request-Id"] == "corr-77"
    wait_for(lambda: access_lines(caplog, "corr-77"), what="access line")

    def about_request(prefix: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records
                if r.name.startswith(prefix) and "unreachable-target-zq7" in r.getMessage()]

    connector_lines = about_request("crank_sync.connector")
    router_lines = about_request("crank_sync.router")
    assert connector_lines, "the connector logged nothing about the failed request"
    assert router_lines, "the router logged nothing about the failed request"
    missing = [f"{r.name}: {r.getMessage()}" for r in connector_lines + router_lines
               if "corr-77" not in r.getMessage()]
    assert not missing, f"log lines about the request without its request id: {missing}"
