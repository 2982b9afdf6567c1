"""TLS on both router listeners and on the connector's side (issue 7, "TLS").

Certificates come from ``trustme`` at test time and are written to ``tmp_path``; no private key
is ever committed. Every router, connector, target and socket is closed in a ``finally`` or a
fixture teardown; every wait is a condition with a deadline.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from support import (
    LOOPBACK,
    both_protocols,
    deterministic_bytes,
    http_get,
    is_closed,
    registered,
    registration_url,
    single_protocols,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- certificates


class Pki:
    """A test CA and a server certificate for 127.0.0.1/localhost, as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        self.server_cert, self.server_key = self.issue("server", LOOPBACK, "localhost")

    def _write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def issue(self, name: str, *hosts: str, ca: trustme.CA | None = None) -> tuple[str, str]:
        """A certificate (chain) and key file signed by ``ca`` (default: this CA)."""
        cert = (ca or self.ca).issue_cert(*hosts)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return (self._write(f"{name}.pem", chain),
                self._write(f"{name}.key", cert.private_key_pem.bytes()))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def tls_router(router_factory: Any, pki: Pki, **overrides: Any) -> Any:
    """A router serving https on the client port and wss on the registration port."""
    return router_factory(
        tls_cert=pki.server_cert, tls_key=pki.server_key,
        registration_tls_cert=pki.server_cert, registration_tls_key=pki.server_key,
        **overrides,
    )


# --------------------------------------------------------------------------- wss connectors


def register_failures(caplog: pytest.LogCaptureFixture, url: str) -> list[logging.LogRecord]:
    """The connector's "cannot register" log records for ``url``."""
    return [r for r in caplog.records
            if r.name.startswith("crank_sync.connector") and "cannot register" in r.getMessage()
            and url in r.getMessage()]


def refused_twice(router: Any, caplog: pytest.LogCaptureFixture, url: str,
                  route: str = "svc") -> list[logging.LogRecord]:
    """Wait for two failed attempts (so a retry failed too), then check nothing registered."""
    failures = wait_for(lambda: len(register_failures(caplog, url)) >= 2 and
                        register_failures(caplog, url),
                        what=f"two failed registrations at {url}")
    assert router.idle_sockets(route) == 0
    return failures


def https_get(router: Any, pki: Pki, path: str) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"https://{LOOPBACK}:{router.http_port}{path}", verify=pki.ca_file,
                     timeout=30)


# --------------------------------------------------------------------------- listeners


@both_protocols
def test_https_client_port_and_forwarded_proto(router_factory, pki, target, connector_factory):
    router = router_factory(tls_cert=pki.server_cert, tls_key=pki.server_key)
    connector_factory(target, route="svc", routers=[router])
    resp = https_get(router, pki, "/svc/headers/tls")
    assert resp.status_code == 200
    forwarded = [v for n, v in resp.json()["headers"] if n.lower() == "forwarded"]
    assert len(forwarded) == 1 and "proto=https" in forwarded[0], forwarded


@single_protocols
def test_wss_registration_with_ca_file(router_factory, pki, target, wss_connectors):
    router = router_factory(registration_tls_cert=pki.server_cert,
                            registration_tls_key=pki.server_key)
    conn = wss_connectors(registration_url(router, "wss"), target.url, ca_file=pki.ca_file)
    registered(router, conn)
    resp = http_get(router, "/svc/bytes/100")
    assert resp.status_code == 200 and len(resp.content) == 100


@single_protocols
def test_bulk_both_ways_over_wss(router_factory, pki, target, wss_connectors):
    """Megabytes each way through a TLS registration socket. The echoes are what once failed:
    with reads and writes on one TLS connection from two threads at once, OpenSSL now and then
    gave the connector a spurious EOF (see tests/wire/test_tls_reads.py)."""
    router = router_factory(registration_tls_cert=pki.server_cert,
                            registration_tls_key=pki.server_key)
    conn = wss_connectors(registration_url(router, "wss"), target.url, ca_file=pki.ca_file)
    registered(router, conn)
    resp = http_get(router, "/svc/bytes/3000000?seed=7")
    assert resp.status_code == 200 and resp.content == deterministic_bytes(3_000_000, 7)
    with requests.Session() as s:
        s.trust_env = False
        for seed in range(3):  # an echo reads and writes the socket at once, both sides
            body = deterministic_bytes(2_000_000, seed)
            echoed = s.post(f"http://{LOOPBACK}:{router.http_port}/svc/echo", data=body,
                            timeout=30)
            assert echoed.status_code == 200 and echoed.content == body, seed


def _tls11_context(pki: Pki) -> ssl.SSLContext:
    """A client context that offers nothing newer than TLS 1.1 (and offers it for real where
    the local OpenSSL allows, so the refusal comes from the router)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=pki.ca_file)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    except (ssl.SSLError, ValueError):
        pass
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


@pytest.mark.parametrize("listener", ["client", "registration"])
def test_tls_1_1_client_is_refused(router_factory, pki, listener):
    router = tls_router(router_factory, pki)
    port = router.http_port if listener == "client" else router.registration_port
    raw = socket.create_connection((LOOPBACK, port), timeout=10)
    try:
        with pytest.raises(ssl.SSLError):
            _tls11_context(pki).wrap_socket(raw, server_hostname=LOOPBACK).close()
    finally:
        raw.close()
    # the same listener does speak modern TLS
    modern = ssl.create_default_context(cafile=pki.ca_file)
    with socket.create_connection((LOOPBACK, port), timeout=10) as raw2:
        with modern.wrap_socket(raw2, server_hostname=LOOPBACK) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@both_protocols
def test_silent_tls_client_blocks_no_one(router_factory, pki, target, connector_factory):
    router = router_factory(tls_cert=pki.server_cert, tls_key=pki.server_key,
                            header_timeout=2.0)
    connector_factory(target, route="svc", routers=[router])
    silent = [socket.create_connection((LOOPBACK, router.http_port), timeout=10)
              for _ in range(3)]
    try:
        resp = https_get(router, pki, "/svc/bytes/10")
        assert resp.status_code == 200 and len(resp.content) == 10
        assert not any(is_closed(s) for s in silent), "silent clients closed too early"
        wait_for(lambda: all(is_closed(s) for s in silent), timeout=20,
                 what="the silent TLS clients to be closed after header_timeout")
    finally:
        for s in silent:
            s.close()


def _client_hello(pki: Pki) -> bytes:
    """The bytes a TLS client opens with, made in memory."""
    ctx = ssl.create_default_context(cafile=pki.ca_file)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=LOOPBACK)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _trickle_handshake(port: int, hello: bytes, stop: threading.Event,
                       closed: threading.Event) -> None:
    """A ClientHello sent one byte every 0.1 s (a bounded loop): no single read waits long."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
            for byte in hello[:-1]:
                if stop.wait(0.1):
                    return
                if is_closed(sock):
                    break
                sock.sendall(bytes([byte]))
            else:
                return
    except OSError:
        pass
    closed.set()


@single_protocols
@pytest.mark.timeout(120)
def test_registration_tls_handshake_has_a_deadline(router_factory, pki, target,
                                                   wss_connectors):
    router = router_factory(registration_tls_cert=pki.server_cert,
                            registration_tls_key=pki.server_key, header_timeout=0.5)
    hello = _client_hello(pki)
    assert len(hello) > 100  # long enough to outlast header_timeout at 10 bytes a second
    stop = threading.Event()
    closed = [threading.Event() for _ in range(5)]
    threads = [threading.Thread(target=_trickle_handshake,
                                args=(router.registration_port, hello, stop, c),
                                name=f"test-tls-trickle-{i}", daemon=True)
               for i, c in enumerate(closed)]
    silent = socket.create_connection((LOOPBACK, router.registration_port), timeout=10)
    try:
        for t in threads:
            t.start()
        wait_for(lambda: all(c.is_set() for c in closed) and is_closed(silent), timeout=30,
                 what="trickling and silent TLS handshakes closed after header_timeout")
        conn = wss_connectors(registration_url(router, "wss"), target.url, ca_file=pki.ca_file)
        registered(router, conn)
        assert http_get(router, "/svc/bytes/10").status_code == 200
    finally:
        stop.set()
        silent.close()
        for t in threads:
            t.join(10)


# --------------------------------------------------------------------------- connector verification


def test_default_verify_refuses_untrusted_router_and_warns(router_factory, pki, target,
                                                           wss_connectors, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = router_factory(registration_tls_cert=pki.server_cert,
                            registration_tls_key=pki.server_key)
    conn = wss_connectors(registration_url(router, "wss"), target.url)
    failures = refused_twice(router, caplog, registration_url(router, "wss"))
    assert conn.idle_count() == 0
    assert any(r.levelno >= logging.WARNING for r in failures), (
        "an untrusted router certificate must be logged as a warning: "
        f"{[(r.levelname, r.getMessage()) for r in failures]}"
    )


@single_protocols
def test_verify_false_registers_with_untrusted_router(router_factory, pki, target,
                                                      wss_connectors):
    router = router_factory(registration_tls_cert=pki.server_cert,
                            registration_tls_key=pki.server_key)
    conn = wss_connectors(registration_url(router, "wss"), target.url, verify=False)
    registered(router, conn)
    assert http_get(router, "/svc/bytes/5").status_code == 200


@single_protocols
def test_verify_false_affects_only_its_connector(router_factory, pki, target, wss_connectors,
                                                 caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router = router_factory(registration_tls_cert=pki.server_cert,
                            registration_tls_key=pki.server_key)
    lax = wss_connectors(registration_url(router, "wss"), target.url, route="lax", verify=False)
    registered(router, lax, route="lax")
    strict = wss_connectors(registration_url(router, "wss"), target.url, route="strict")
    refused_twice(router, caplog, registration_url(router, "wss"), route="strict")
    assert strict.idle_count() == 0
    assert router.idle_sockets("lax") >= 2
    # nothing process-wide changed
    default = ssl.create_default_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert ssl._create_default_https_context is ssl.create_default_context
    with socket.create_connection((LOOPBACK, router.registration_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            default.wrap_socket(raw, server_hostname=LOOPBACK).close()


@single_protocols
def test_hostname_mismatch_fails_even_with_ca_file(router_factory, pki, target,
                                                   wss_connectors, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    cert, key = pki.issue("example", "example.test")
    router = router_factory(registration_tls_cert=cert, registration_tls_key=key)
    conn = wss_connectors(registration_url(router, "wss"), target.url, ca_file=pki.ca_file)
    refused_twice(router, caplog, registration_url(router, "wss"))
    assert conn.idle_count() == 0


@single_protocols
def test_hostname_mismatch_accepted_with_verify_false(router_factory, pki, target,
                                                      wss_connectors):
    cert, key = pki.issue("example", "example.test")
    router = router_factory(registration_tls_cert=cert, registration_tls_key=key)
    conn = wss_connectors(registration_url(router, "wss"), target.url, ca_file=pki.ca_file,
                          verify=False)
    registered(router, conn)
    assert http_get(router, "/svc/bytes/5").status_code == 200


# --------------------------------------------------------------------------- https targets


class _TlsTargetHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        body = b"hello over tls\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _TlsTargetServer(http.server.ThreadingHTTPServer):
    """The TLS handshake happens lazily on the handler thread, never in the accept loop."""

    daemon_threads = True

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.paths: list[str] = []
        super().__init__((LOOPBACK, 0), _TlsTargetHandler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes are what some tests are about


@pytest.fixture
def https_target(pki: Pki) -> Iterator[_TlsTargetServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server = _TlsTargetServer(ctx)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="test-https-target", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@both_protocols
@pytest.mark.parametrize(
    ("options", "status"),
    [
        pytest.param({"target_ca_file": "CA"}, 200, id="target-ca-file"),
        pytest.param({}, 502, id="untrusted"),
        pytest.param({"target_verify": False}, 200, id="target-verify-false"),
    ],
)
def test_https_target(router, pki, https_target, connector_factory, options, status):
    options = {k: (pki.ca_file if v == "CA" else v) for k, v in options.items()}
    url = f"https://{LOOPBACK}:{https_target.server_address[1]}"
    connector_factory(url, route="svc", **options)
    resp = http_get(router, "/svc/x")
    assert resp.status_code == status
    if status == 200:
        assert resp.content == b"hello over tls\n"
        assert https_target.paths == ["/svc/x"]
    else:
        assert https_target.paths == []


# --------------------------------------------------------------------------- command line


def _print_config(*flags: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_connector.py"),
         "--router", "wss://127.0.0.1:1", "--route", "svc", "--target", "http://127.0.0.1:1",
         *flags, "--print-config"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-connector-token" not in proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_run_connector_tls_and_token_flags(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("checked for readability only; --print-config loads no certificate\n")
    ca = str(ca)
    printed = _print_config("--ca-file", ca, "--insecure", "--token", "s3cr3t-connector-token")
    assert printed["verify"] is False
    assert printed["ca_file"] == ca
    assert printed["token"] == "***"
    assert _print_config("--token", "s3cr3t-connector-token")["verify"] is True
