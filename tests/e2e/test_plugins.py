"""The shipped plugins (crank_sync/plugins) on a real router, connector and target, over v1 and
v3: the access log's JSON lines (at the router and at the connector), the Server-Timing header,
the header check; loaded from the ``plugins`` setting (as the command line gives it) and given
as classes from Python."""

from __future__ import annotations

import http.client
import json
import re
import threading
from pathlib import Path

import pytest
from support import (
    LOOPBACK,
    both_protocols,
    client_url,
    deterministic_bytes,
    single_protocols,
    wait_for,
)

from crank_sync import Connector, PluginError, ProxyListener
from crank_sync.plugins import AccessLog, HeaderAuth, ServerTiming

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TIMING_RE = re.compile(r"^socket;dur=(\d+\.\d), connector;dur=(\d+\.\d), total;dur=(\d+\.\d)$")
FIELDS = {"time", "client", "method", "target", "route", "status", "bytes_in", "bytes_out",
          "duration_ms", "socket_wait_ms", "connector", "protocol", "request_id", "error"}


def read_lines(path: Path, count: int) -> list[dict]:
    """The first ``count`` lines of an access log, once they are there."""
    def ready() -> bool:
        return path.exists() and path.read_text().count("\n") >= count

    wait_for(ready, 10, f"{count} access log lines in {path}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def close_access_logs(router) -> None:
    for listener in router.listeners:
        if isinstance(listener, AccessLog):
            listener.close()


def raw_get(router, path: str, headers: dict | None = None):
    """Status, header lines (repeats kept) and body."""
    conn = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- access-log


@both_protocols
def test_access_log_writes_one_json_line_per_request(router_factory, target, connector_factory,
                                                     session, tmp_path, cranker_protocols):
    log_path = tmp_path / "access.jsonl"
    router = router_factory(plugins=[f"access-log path={log_path}"], connector_max_wait=0.5)
    conn = connector_factory(target, routers=[router], route="svc")
    body = deterministic_bytes(30_000, 5)
    posted = session.post(client_url(router, "/svc/echo?x=1"), data=body, timeout=10)
    assert posted.status_code == 200 and posted.content == body
    got = session.get(client_url(router, "/svc/bytes/123"), timeout=10)
    assert got.status_code == 200
    missing = session.get(client_url(router, "/nobody/here"), timeout=10)
    assert missing.status_code in (404, 503)
    lines = read_lines(log_path, 3)
    close_access_logs(router)
    assert len(lines) == 3 and all(set(line) == FIELDS for line in lines)
    by_target = {r["target"]: r for r in lines}
    post, get = by_target["/svc/echo?x=1"], by_target["/svc/bytes/123"]
    none = by_target["/nobody/here"]
    assert post["method"] == "POST" and post["target"] == "/svc/echo?x=1"
    assert post["route"] == "svc" and post["status"] == 200 and post["error"] is None
    assert post["bytes_in"] == len(body) and post["bytes_out"] == len(body)
    assert post["request_id"] == posted.headers["X-Request-Id"]
    assert post["client"] == LOOPBACK and TIME_RE.match(post["time"])
    assert isinstance(post["duration_ms"], float) and isinstance(post["socket_wait_ms"], float)
    expected = {"1.0": {"cranker_1.0"}, "3.0": {"cranker_3.0"}}.get(
        cranker_protocols[0], {"cranker_1.0", "cranker_3.0"})
    assert post["protocol"] in expected
    ids = {p.connector_instance_id for p in getattr(conn, "parts", [conn])}
    assert post["connector"] in ids
    assert get["target"] == "/svc/bytes/123" and get["bytes_in"] == 0
    assert get["bytes_out"] == 123 and get["request_id"] == got.headers["X-Request-Id"]
    assert none["status"] == missing.status_code and none["connector"] is None
    assert none["error"].split(":")[0] in ("NoRoute", "NoConnectorAvailable")


def test_access_log_lines_of_concurrent_requests_never_mix(router_factory, target,
                                                           connector_factory, tmp_path):
    log = AccessLog(str(tmp_path / "a.jsonl"))
    router = router_factory(listeners=[log])
    connector_factory(target, routers=[router], route="svc", sliding_window=4)
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            for i in range(10):
                status, _, _ = raw_get(router, f"/svc/bytes/{n * 100 + i}")
                assert status == 200
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(n,), name=f"test-client-{n}")
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    lines = read_lines(tmp_path / "a.jsonl", 40)
    log.close()
    assert sorted(r["bytes_out"] for r in lines) == sorted(
        n * 100 + i for n in range(4) for i in range(10))


def test_access_log_to_stderr_by_default(router_factory, target, connector_factory, capsys,
                                         monkeypatch):
    monkeypatch.delenv("CRANK_ACCESS_LOG", raising=False)
    router = router_factory(plugins=["access-log"])
    connector_factory(target, routers=[router], route="svc")
    status, headers, _ = raw_get(router, "/svc/bytes/9")
    assert status == 200

    seen: list[str] = []

    def logged() -> list[dict]:
        seen.append(capsys.readouterr().err)
        return [json.loads(x) for x in "".join(seen).splitlines() if x.startswith("{")]

    wait_for(lambda: logged(), 10, "an access log line on stderr")
    line = logged()[0]
    assert line["request_id"] == dict(headers)["X-Request-Id"] and line["bytes_out"] == 9


@single_protocols
def test_access_log_at_the_connector(router_factory, target, connector_factory, session,
                                     tmp_path, cranker_protocols):
    log_path = tmp_path / "connector.jsonl"
    router = router_factory()
    conn = connector_factory(target, routers=[router], route="svc",
                             plugins=[f"access-log path={log_path}"])
    assert [type(x) for x in conn.listeners] == [AccessLog]
    body = deterministic_bytes(10_000, 9)
    posted = session.post(client_url(router, "/svc/echo"), data=body, timeout=10)
    assert posted.status_code == 200 and posted.content == body
    missing = session.get(client_url(router, "/svc/no-such-endpoint"), timeout=10)
    assert missing.status_code == 404
    lines = read_lines(log_path, 2)
    for listener in conn.listeners:
        listener.close()
    assert set(lines[0]) == FIELDS - {"client", "connector", "socket_wait_ms"} | {"router"}
    post, get = lines
    assert post["router"] == f"ws://{LOOPBACK}:{router.registration_port}"
    assert post["method"] == "POST" and post["target"] == "/svc/echo" and post["route"] == "svc"
    assert post["status"] == 200 and post["error"] is None
    assert post["bytes_in"] == len(body) and post["bytes_out"] == len(body)
    assert post["protocol"] == f"cranker_{cranker_protocols[0]}"
    assert post["request_id"] == posted.headers["X-Request-Id"] and TIME_RE.match(post["time"])
    assert get["status"] == 404 and get["request_id"] == missing.headers["X-Request-Id"]


def test_a_router_plugin_is_refused_by_a_connector(target):
    with pytest.raises(PluginError, match=r"^plugins: 'server-timing': made a router listener "
                                          r"\(ServerTiming\): give it to crank-router$"):
        Connector(target=target.url, route="svc", routers=["ws://127.0.0.1:1"],
                  plugins=["server-timing"])


# --------------------------------------------------------------------------- server-timing


@both_protocols
def test_server_timing_on_every_connector_response(router_factory, target, connector_factory):
    router = router_factory(plugins=["server-timing"], connector_max_wait=0.5)
    connector_factory(target, routers=[router], route="svc")
    status, headers, body = raw_get(router, "/svc/bytes/500")
    assert status == 200 and len(body) == 500
    lines = [v for n, v in headers if n.lower() == "server-timing"]
    assert len(lines) == 2, headers
    match = TIMING_RE.match(", ".join(lines))
    assert match, lines
    socket_ms, connector_ms, total_ms = (float(g) for g in match.groups())
    assert socket_ms >= 0 and connector_ms >= 0 and total_ms >= 0
    # a response the router makes itself has none
    status, headers, _ = raw_get(router, "/nobody/here")
    assert status in (404, 503)
    assert not [v for n, v in headers if n.lower() == "server-timing"]


# --------------------------------------------------------------------------- header-auth


@both_protocols
def test_header_auth_rejects_without_a_token(router_factory, target, connector_factory,
                                             session, monkeypatch):
    monkeypatch.setenv("CRANK_AUTH_TOKENS", "first-token, second-token")
    router = router_factory(plugins=["header-auth"])
    connector_factory(target, routers=[router], route="svc")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "first-token"},
                    {"Authorization": "Basic first-token"}):
        resp = session.get(client_url(router, "/svc/bytes/3"), headers=headers, timeout=10)
        assert resp.status_code == 401, headers
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="crank_sync"'
    assert target.received_for("/svc/bytes/3") == []
    for token in ("first-token", "second-token"):
        resp = session.get(client_url(router, "/svc/bytes/3"),
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert resp.status_code == 200 and len(resp.content) == 3
    assert len(target.received_for("/svc/bytes/3")) == 2


def test_header_auth_on_some_routes_with_an_api_key_from_a_file(router_factory, target,
                                                                connector_factory, session,
                                                                tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# the api keys\n\nkey-one\n  key-two  \n")
    router = router_factory(plugins=[f"header-auth header=X-Api-Key token_file={keys} "
                                     f"routes=svc|admin"])
    connector_factory(target, routers=[router], route="svc")
    connector_factory(target, routers=[router], route="pub")
    assert session.get(client_url(router, "/pub/bytes/2"), timeout=10).status_code == 200
    refused = session.get(client_url(router, "/svc/bytes/2"), timeout=10)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'ApiKey realm="crank_sync", header="X-Api-Key"'
    assert session.get(client_url(router, "/svc/bytes/2"), headers={"X-Api-Key": "key-one"},
                       timeout=10).status_code == 200
    assert session.get(client_url(router, "/svc/bytes/2"), headers={"X-Api-Key": "key-two"},
                       timeout=10).status_code == 200
    # a request that falls through to the catch-all is still one for its route
    connector_factory(target, routers=[router], route="*")
    assert session.get(client_url(router, "/admin/bytes/2"), timeout=10).status_code == 401
    assert session.get(client_url(router, "/admin/bytes/2"), headers={"X-Api-Key": "key-two"},
                       timeout=10).status_code == 200
    assert session.get(client_url(router, "/other/bytes/2"), timeout=10).status_code == 200


# --------------------------------------------------------------------------- together


def test_given_listeners_come_before_the_plugins(router_factory, target, connector_factory,
                                                 session, monkeypatch):
    monkeypatch.setenv("CRANK_AUTH_TOKENS", "t0ken")
    seen: list[str] = []

    class First(ProxyListener):
        def on_before_proxy_to_target(self, info, headers):
            seen.append("first")

        def on_complete(self, info):
            seen.append(f"complete {info.status}")

    router = router_factory(listeners=[First()], plugins=["header-auth", "server-timing"])
    assert [type(x) for x in router.listeners] == [First, HeaderAuth, ServerTiming]
    connector_factory(target, routers=[router], route="svc")
    assert session.get(client_url(router, "/svc/bytes/1"), timeout=10).status_code == 401
    wait_for(lambda: "complete 401" in seen, 10, "on_complete of the refused request")
    assert seen == ["first", "complete 401"]  # first saw the request the plugin refused
    ok = session.get(client_url(router, "/svc/bytes/1"),
                     headers={"Authorization": "Bearer t0ken"}, timeout=10)
    assert ok.status_code == 200 and "total;dur=" in ok.headers["Server-Timing"]


def test_plugins_as_classes_from_python(router_factory, target, connector_factory, session,
                                        tmp_path):
    log = AccessLog(str(tmp_path / "py.jsonl"))
    auth = HeaderAuth(tokens=["py-token"])
    router = router_factory(listeners=[log, auth, ServerTiming()])
    connector_factory(target, routers=[router], route="svc")
    assert session.get(client_url(router, "/svc/bytes/1"), timeout=10).status_code == 401
    ok = session.get(client_url(router, "/svc/bytes/4"),
                     headers={"Authorization": "bearer py-token"}, timeout=10)
    assert ok.status_code == 200 and TIMING_RE.match(ok.headers["Server-Timing"])
    lines = read_lines(tmp_path / "py.jsonl", 2)
    log.close()
    assert [r["status"] for r in lines] == [401, 200]
    assert "py-token" not in repr(auth)


def test_no_plugins_no_listeners(router_factory):
    assert router_factory().listeners == ()


def test_a_bad_plugin_stops_the_router_being_made(router_factory, monkeypatch):
    monkeypatch.delenv("CRANK_AUTH_TOKENS", raising=False)
    with pytest.raises(PluginError, match=r"^plugins: 'header-auth': no tokens"):
        router_factory(plugins=["header-auth"])
