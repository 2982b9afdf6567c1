"""Who may register, and who may use the admin endpoints (issue 7, "Who may register").

Registration tokens (rotation, token file, deregistration), the network allow-list, mutual TLS
on the registration port, and admin tokens. Raw refusals are checked with ``http.client`` so the
status before any upgrade is visible; real connectors show the positive paths end to end.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from support import LOOPBACK, both_protocols, http_get, registered, single_protocols, wait_for

from crank_sync import Connector

TOKEN_OLD = "tok-old-7f3a9c1e55"
TOKEN_NEW = "tok-new-2b8d4e6f11"
TOKEN_FILE = "tok-file-91c0ffee42"
TOKEN_WRONG = "tok-wrong-deadbeef99"
ADMIN_TOKEN = "adm-5e5e5e5e5e"


# --------------------------------------------------------------------------- helpers


def raw_upgrade(port: int, path: str = "/register/", instance: str = "raw",
                token: str | None = None, authorization: str | None = None,
                route: str = "svc") -> tuple[int, str]:
    """A registration (or deregistration) upgrade request; returns (status, body)."""
    headers = {
        "Host": f"{LOOPBACK}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "CrankerProtocol": "1.0",
        "Route": route,
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", f"{path}?connectorInstanceID={instance}&componentName=raw",
                     headers=headers)
        resp = conn.getresponse()
        body = b"" if resp.status == 101 else resp.read()
        return resp.status, body.decode("utf-8", "replace")
    finally:
        conn.close()


def admin(router: Any, method: str, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with requests.Session() as s:
        s.trust_env = False
        resp = s.request(method, f"http://{LOOPBACK}:{router.registration_port}{path}",
                         headers=headers, timeout=30)
        return resp.status_code


def register_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name.startswith("crank_sync.connector") and "cannot register" in r.getMessage()]


def refused_twice(router: Any, caplog: pytest.LogCaptureFixture,
                  route: str = "svc") -> list[logging.LogRecord]:
    """Wait for two failed attempts (a retry failed too), then check nothing registered."""
    failures = wait_for(lambda: len(register_failures(caplog)) >= 2 and register_failures(caplog),
                        what="two failed registrations")
    assert router.idle_sockets(route) == 0
    return failures


# --------------------------------------------------------------------------- tokens


def test_no_token_is_403_before_upgrade(router_factory):
    router = router_factory(registration_tokens=(TOKEN_OLD,))
    status, body = raw_upgrade(router.registration_port)
    assert status == 403 and status != 101
    assert TOKEN_OLD not in body
    assert router.idle_sockets("svc") == 0


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN_WRONG}", f"Basic {TOKEN_OLD}", "Bearer ", f"Bearer {TOKEN_OLD}x",
     f"Bearer {TOKEN_OLD[:-1]}"],
    ids=["wrong", "basic-scheme", "empty", "longer", "prefix"],
)
def test_wrong_token_is_403(router_factory, authorization):
    router = router_factory(registration_tokens=(TOKEN_OLD,))
    status, _ = raw_upgrade(router.registration_port, authorization=authorization)
    assert status == 403
    assert router.idle_sockets("svc") == 0


@both_protocols
def test_connector_with_wrong_token_does_not_register(router_factory, target, connector_factory,
                                                      caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = router_factory(registration_tokens=(TOKEN_OLD,))
    conn = connector_factory(target, routers=[router], wait=False, token=TOKEN_WRONG)
    failures = refused_twice(router, caplog)
    assert conn.idle_count() == 0
    assert all("403" in r.getMessage() for r in failures), [r.getMessage() for r in failures]


@both_protocols
def test_rotation_old_and_new_tokens_both_work(router_factory, target, connector_factory):
    router = router_factory(registration_tokens=(TOKEN_OLD, TOKEN_NEW))
    connector_factory(target, route="old", routers=[router], token=TOKEN_OLD)
    connector_factory(target, route="new", routers=[router], token=TOKEN_NEW)
    assert http_get(router, "/old/bytes/3").status_code == 200
    assert http_get(router, "/new/bytes/4").status_code == 200


@both_protocols
def test_token_from_file(router_factory, target, connector_factory, tmp_path: Path):
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"# rotated 2024-01-01\n\n{TOKEN_FILE}\n", encoding="utf-8")
    router = router_factory(registration_tokens=(TOKEN_OLD,),
                            registration_token_file=str(token_file))
    connector_factory(target, route="filed", routers=[router], token=TOKEN_FILE)
    connector_factory(target, route="flagged", routers=[router], token=TOKEN_OLD)
    assert http_get(router, "/filed/bytes/3").status_code == 200
    assert http_get(router, "/flagged/bytes/3").status_code == 200
    status, _ = raw_upgrade(router.registration_port, token="# rotated 2024-01-01")
    assert status == 403


@single_protocols
def test_deregister_without_token_is_403_and_sockets_stay(router_factory, target,
                                                          connector_factory):
    router = router_factory(registration_tokens=(TOKEN_OLD,))
    conn = connector_factory(target, routers=[router], token=TOKEN_OLD)
    instance = conn.connector_instance_id
    for token in (None, TOKEN_WRONG):
        status, _ = raw_upgrade(router.registration_port, path="/deregister/",
                                instance=instance, token=token)
        assert status == 403
    assert router.idle_sockets("svc") == 2
    assert conn.idle_count() == 2
    assert http_get(router, "/svc/bytes/7").status_code == 200


@both_protocols
def test_tokens_never_logged(router_factory, target, connector_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="crank_sync")
    router = router_factory(registration_tokens=(TOKEN_OLD, TOKEN_NEW),
                            admin_tokens=(ADMIN_TOKEN,))
    conn = connector_factory(target, routers=[router], token=TOKEN_NEW)
    assert http_get(router, "/svc/bytes/3").status_code == 200
    assert raw_upgrade(router.registration_port, token=TOKEN_WRONG)[0] == 403
    assert raw_upgrade(router.registration_port, path="/deregister/",
                       instance=conn.connector_instance_id, token=TOKEN_OLD + "x")[0] == 403
    assert admin(router, "GET", "/metrics", token=TOKEN_WRONG) == 403
    assert admin(router, "GET", "/metrics", token=ADMIN_TOKEN) == 200
    assert connector_factory.stop(conn, timeout=10.0)
    ours = [r for r in caplog.records if r.name.startswith("crank_sync")]
    assert any("token" in r.getMessage() for r in ours), "the refusals were not logged"
    for record in ours:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for secret in (TOKEN_OLD, TOKEN_NEW, TOKEN_WRONG, ADMIN_TOKEN):
            assert secret not in text, f"{record.name} logged a token: {record.getMessage()}"


# --------------------------------------------------------------------------- allow-list


def test_allow_list_refuses_other_networks(router_factory, target, connector_factory, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = router_factory(registration_allow=("10.0.0.0/8",))
    assert raw_upgrade(router.registration_port)[0] == 403
    assert admin(router, "GET", "/health") == 403
    conn = connector_factory(target, routers=[router], wait=False)
    refused_twice(router, caplog)
    assert conn.idle_count() == 0


@both_protocols
def test_allow_list_admits_its_networks(router_factory, target, connector_factory):
    router = router_factory(registration_allow=("10.0.0.0/8", "127.0.0.0/8"))
    connector_factory(target, routers=[router])
    assert admin(router, "GET", "/health") == 200
    assert http_get(router, "/svc/bytes/3").status_code == 200


# --------------------------------------------------------------------------- mutual TLS


class MtlsPki:
    """A server CA (the router's certificate) and a separate client CA (connectors')."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.ca_file = self._write("server-ca.pem", self.server_ca.cert_pem.bytes())
        self.client_ca_file = self._write("client-ca.pem", self.client_ca.cert_pem.bytes())
        self.server_cert, self.server_key = self.issue("server", self.server_ca, LOOPBACK)

    def _write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def issue(self, name: str, ca: trustme.CA, *hosts: str) -> tuple[str, str]:
        cert = ca.issue_cert(*hosts)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return (self._write(f"{name}.pem", chain),
                self._write(f"{name}.key", cert.private_key_pem.bytes()))


@pytest.fixture
def mtls(tmp_path: Path) -> MtlsPki:
    return MtlsPki(tmp_path)


@pytest.fixture
def wss_connectors(wss_connectors: Callable[..., Connector]) -> Callable[..., Connector]:
    """The shared ``wss_connectors``, called here with the router instead of its URL."""

    def make(router: Any, target_url: str, route: str = "svc", **kwargs: Any) -> Connector:
        return wss_connectors(f"wss://{LOOPBACK}:{router.registration_port}", target_url, route,
                              **kwargs)

    return make


def mtls_router(router_factory: Any, mtls: MtlsPki) -> Any:
    return router_factory(registration_tls_cert=mtls.server_cert,
                          registration_tls_key=mtls.server_key,
                          registration_client_ca=mtls.client_ca_file)


def test_mtls_connector_without_client_cert_is_refused(router_factory, target, mtls,
                                                       wss_connectors, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = mtls_router(router_factory, mtls)
    conn = wss_connectors(router, target.url, ca_file=mtls.ca_file)
    refused_twice(router, caplog)
    assert conn.idle_count() == 0


def test_mtls_client_cert_from_another_ca_is_refused(router_factory, target, mtls,
                                                     wss_connectors, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = mtls_router(router_factory, mtls)
    cert, key = mtls.issue("stranger", trustme.CA(), "connector.test")
    conn = wss_connectors(router, target.url, ca_file=mtls.ca_file, client_cert=cert,
                          client_key=key)
    refused_twice(router, caplog)
    assert conn.idle_count() == 0


@single_protocols
def test_mtls_connector_with_client_cert_registers(router_factory, target, mtls,
                                                   wss_connectors):
    router = mtls_router(router_factory, mtls)
    cert, key = mtls.issue("connector", mtls.client_ca, "connector.test")
    conn = wss_connectors(router, target.url, ca_file=mtls.ca_file, client_cert=cert,
                          client_key=key)
    registered(router, conn)
    assert http_get(router, "/svc/bytes/9").status_code == 200


# --------------------------------------------------------------------------- admin tokens


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health/connectors"),
        ("GET", "/metrics"),
        ("GET", "/api/registrations"),
        ("GET", "/api/timeseries"),
        ("PUT", "/api/dark-mode/127.0.0.2"),
        ("DELETE", "/api/dark-mode/127.0.0.2"),
    ],
)
def test_admin_endpoints_need_the_admin_token(router_factory, method, path):
    router = router_factory(admin_tokens=(ADMIN_TOKEN,))
    assert admin(router, "GET", "/health") == 200
    assert admin(router, method, path) == 403
    assert admin(router, method, path, token=TOKEN_WRONG) == 403
    assert admin(router, method, path, token=ADMIN_TOKEN) == 200


def test_admin_token_is_not_a_registration_token(router_factory):
    router = router_factory(registration_tokens=(TOKEN_OLD,), admin_tokens=(ADMIN_TOKEN,))
    assert raw_upgrade(router.registration_port, token=ADMIN_TOKEN)[0] == 403
    assert admin(router, "GET", "/metrics", token=TOKEN_OLD) == 403
