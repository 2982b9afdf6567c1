"""Addresses of a running router on the loopback address, and a plain GET to it.

A router has two ports: ``http_port`` for clients, ``registration_port`` for connectors (where
the admin endpoints and the dashboard are too).
"""

from __future__ import annotations

from typing import Any

import requests

from .sockets import LOOPBACK


def client_url(router: Any, path: str = "") -> str:
    """``http://`` on the router's client port, with ``path`` (starting with ``/``) after it."""
    return f"http://{LOOPBACK}:{router.http_port}{path}"


def admin_url(router: Any, path: str = "") -> str:
    """``http://`` on the router's registration port (admin endpoints, dashboard)."""
    return f"http://{LOOPBACK}:{router.registration_port}{path}"


def registration_url(router: Any, scheme: str = "ws") -> str:
    """The router URL a connector is given: ``ws://`` (or ``wss://``) on the registration port."""
    return f"{scheme}://{LOOPBACK}:{router.registration_port}"


def http_get(router: Any, path: str, timeout: float = 30) -> requests.Response:
    """GET ``path`` on the client port in a fresh session that ignores proxies from the
    environment."""
    with requests.Session() as s:
        s.trust_env = False
        return s.get(client_url(router, path), timeout=timeout)
