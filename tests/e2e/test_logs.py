"""What the logs say about registrations: once when a connector registers, again when it recovers,
why a router refused it, and never a password or a token. Real routers and connectors on
127.0.0.1; the log records are read from ``caplog``."""
from __future__ import annotations

import logging
import socket
import urllib.parse
from typing import Any

import pytest
import requests
import websocket
from support import LOOPBACK, closed_port, registration_url, single_protocols, wait_for

from crank_sync.connector.connector import QUIET_ATTEMPTS
from crank_sync.connector.worker import endpoint, handshake_headers


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="crank_sync")


def messages(caplog: pytest.LogCaptureFixture, logger: str, text: str,
             level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith(logger) and text in r.getMessage()
            and (level is None or r.levelno == level)]


def connector(target: Any, routers: list[str], **options: Any) -> Any:
    from crank_sync import Connector

    options.setdefault("connect_timeout", 5.0)
    return Connector(target=target if isinstance(target, str) else target.url, route="svc",
                     routers=routers, component_name="logs", **options)


@single_protocols
def test_connector_logs_its_registration_once(router, target, connector_factory, session,
                                              caplog, cranker_protocols):
    conn = connector_factory(target, route="svc", sliding_window=2)
    url = f"http://{LOOPBACK}:{router.http_port}/svc/bytes/10"
    for _ in range(5):  # v1: five sockets used up and replaced, no new registration line
        assert session.get(url, timeout=10).status_code == 200
    version = "3.0" if "3.0" in cranker_protocols else "1.0"
    lines = messages(caplog, "crank_sync.connector", "registered at")
    at = registration_url(router)
    assert lines == [f"registered at {at} with cranker_{version} for route 'svc'"]
    # the router logs the connector once too, with its component and protocol
    arrived = messages(caplog, "crank_sync.router", "registered route", logging.INFO)
    assert len(arrived) == 1, arrived
    assert conn.connector_instance_id in arrived[0] and "component-svc" in arrived[0]
    assert f"cranker_{version}" in arrived[0] and "'svc'" in arrived[0]
    assert connector_factory.stop(conn)
    gone = messages(caplog, "crank_sync.router", "deregistered", logging.INFO)
    assert len(gone) == 1 and conn.connector_instance_id in gone[0], gone
    # it said goodbye: no "gone without deregistering"
    assert not messages(caplog, "crank_sync.router", "without deregistering")


@single_protocols
def test_connector_logs_loss_and_recovery(router_factory, target, caplog, cranker_protocols):
    first = router_factory()
    port = first.registration_port
    conn = connector(target, [registration_url(first)], protocols=cranker_protocols).start()
    try:
        wait_for(lambda: conn.idle_count() >= 1, what="registration")
        router_factory.stop(first)
        wait_for(lambda: messages(caplog, "crank_sync.connector", "lost registration",
                                  logging.WARNING), what="the loss logged")
        second = router_factory(registration_port=port)
        wait_for(lambda: second.idle_sockets("svc") >= 1, what="registration at the new router")
        again = wait_for(lambda: messages(caplog, "crank_sync.connector", "registered at"),
                         what="lines")
        assert len(again) == 2, again
        assert again[1].startswith(f"registered at ws://{LOOPBACK}:{port} with cranker_")
        assert "again, after" in again[1]
        assert len(messages(caplog, "crank_sync.connector", "lost registration")) == 1
    finally:
        assert conn.stop(timeout=10)


def test_router_logs_a_connector_lost_without_deregistering(router, caplog):
    url = endpoint(registration_url(router), "register", "vanishing-connector", "gone-soon")
    ws = websocket.create_connection(url, timeout=10, header=handshake_headers("svc", ("1.0",)))
    try:
        wait_for(lambda: router.idle_sockets("svc") == 1, what="the raw registration")
    finally:
        ws.sock.shutdown(socket.SHUT_RDWR)  # no close frame, no deregistration
        ws.sock.close()
    lost = wait_for(lambda: messages(caplog, "crank_sync.router", "without deregistering",
                                     logging.INFO), what="the loss logged")
    assert "vanishing-connector" in lost[0] and "gone-soon" in lost[0] and "'svc'" in lost[0]


@pytest.mark.parametrize("case", ["token", "protocol", "client-port"])
def test_a_refused_registration_says_why(router_factory, target, caplog, case):
    if case == "token":
        router = router_factory(registration_tokens=("right-token",))
        url, options, why = registration_url(router), {"token": "wrong-token"}, \
            "router answered 403 Forbidden: missing or invalid registration token"
    elif case == "protocol":
        router = router_factory(protocols=("1.0",))
        url, options, why = registration_url(router), {"protocols": ("3.0",)}, \
            "this router speaks cranker_1.0"
    else:
        router = router_factory()
        url, options, why = f"ws://{LOOPBACK}:{router.http_port}", {}, \
            "router answered 404 Not Found: no connector registered for route 'register'"
    conn = connector(target, [url], **options).start()
    try:
        line = wait_for(lambda: messages(caplog, "crank_sync.connector", "cannot register",
                                         logging.WARNING), what="a refusal logged")[0]
    finally:
        conn.stop(timeout=5)
    assert why in line, line
    if case == "client-port":
        assert "(is this the router's registration port?)" in line
    assert "wrong-token" not in caplog.text and "right-token" not in caplog.text


def test_unreachable_router_is_info_then_warning(target, caplog):
    url = f"ws://{LOOPBACK}:{closed_port()}"
    conn = connector(target, [url]).start()
    try:
        wait_for(lambda: messages(caplog, "crank_sync.connector", "cannot register",
                                  logging.WARNING), timeout=30, what="a warning")
    finally:
        conn.stop(timeout=5)
    levels = [r.levelno for r in caplog.records if "cannot register" in r.getMessage()]
    assert levels[:QUIET_ATTEMPTS] == [logging.INFO] * QUIET_ATTEMPTS, levels
    assert levels[QUIET_ATTEMPTS] == logging.WARNING, levels


def test_a_router_never_reached_is_not_asked_to_deregister(target, caplog):
    url = f"ws://{LOOPBACK}:{closed_port()}"
    conn = connector(target, [url]).start()
    try:
        wait_for(lambda: messages(caplog, "crank_sync.connector", "cannot register"),
                 what="a failed registration attempt")
    finally:
        assert conn.stop(timeout=5)
    assert messages(caplog, "crank_sync.connector", "nothing to deregister at", logging.DEBUG)
    assert not messages(caplog, "crank_sync.connector", "deregistration at")


def test_no_password_or_token_in_logs(router_factory, target, caplog):
    router = router_factory(registration_tokens=("tok-9f8e7d",))
    parts = urllib.parse.urlsplit(target.url)
    with_password = f"http://someone:pw-5a4b3c@{parts.netloc}"
    conn = connector(with_password, [registration_url(router)], token="tok-9f8e7d").start()
    try:
        wait_for(lambda: router.idle_sockets("svc") >= 1, what="registration")
        with requests.Session() as s:
            s.trust_env = False
            resp = s.get(f"http://{LOOPBACK}:{router.http_port}/svc/bytes/5", timeout=10)
        assert resp.status_code == 200
    finally:
        assert conn.stop(timeout=10)
    started = messages(caplog, "crank_sync.connector", "started, registering at")
    assert started and "someone:***@" in started[0], started
    assert "pw-5a4b3c" not in caplog.text and "tok-9f8e7d" not in caplog.text
