"""Fixtures shared by the end-to-end modules (the suite-wide ones are in ``tests/conftest.py``)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.ws_service import WebSocketService


@pytest.fixture
def svc(router: Any, target: Any, connector_factory: Any) -> Any:
    """A connector serving route ``svc`` from the default target, registered at ``router``."""
    return connector_factory(target, route="svc")


@pytest.fixture
def service() -> Iterator[WebSocketService]:
    """A websocket service (simple-websocket) for the tunnel tests."""
    svc = WebSocketService()
    yield svc
    svc.stop()
