"""Plain HTTP (or ws://) sent to a TLS port gets ``400`` with a line saying what to do and a
clean close, as nginx answers, not a reset. Certificates from ``trustme``, written to tmp_path."""
from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from support import LOOPBACK, wait_for

from crank_sync import Connector

EXPLANATION = b"this port speaks TLS: use https:// (or wss://)\n"


@pytest.fixture
def tls_router(router_factory: Any, tmp_path: Path) -> tuple[Any, str]:
    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK)
    cert_file, key_file, ca_file = (tmp_path / "cert.pem", tmp_path / "key.pem",
                                    tmp_path / "ca.pem")
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    ca_file.write_bytes(ca.cert_pem.bytes())
    router = router_factory(tls_cert=str(cert_file), tls_key=str(key_file),
                            registration_tls_cert=str(cert_file),
                            registration_tls_key=str(key_file))
    return router, str(ca_file)


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the router closes; a reset raises (that is what must not happen)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("listener", ["client", "registration"])
def test_plain_http_on_a_tls_port_gets_400_and_a_close(tls_router, listener):
    router, ca_file = tls_router
    port = router.http_port if listener == "client" else router.registration_port
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(b"GET /svc/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n")
        answer = read_to_eof(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"Connection: close" in head and f"Content-Length: {len(body)}".encode() in head
    assert body == EXPLANATION
    # the port still speaks TLS
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((LOOPBACK, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_ws_connector_on_a_wss_port_is_told_why(tls_router, target, caplog):
    caplog.set_level(logging.INFO, logger="crank_sync")
    router, _ = tls_router
    conn = Connector(target=target.url, route="svc",
                     routers=[f"ws://{LOOPBACK}:{router.registration_port}"]).start()
    try:
        line = wait_for(lambda: [r.getMessage() for r in caplog.records
                                 if "cannot register" in r.getMessage()],
                        what="the refusal logged")[0]
    finally:
        conn.stop(timeout=5)
    assert "router answered 400 Bad Request: this port speaks TLS: use https:// (or wss://)" \
        in line, line
