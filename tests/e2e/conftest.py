"""Fixtures shared by the end-to-end modules (the suite-wide ones are in ``tests/conftest.py``)."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def svc(router: Any, target: Any, connector_factory: Any) -> Any:
    """A connector serving route ``svc`` from the default target, registered at ``router``."""
    return connector_factory(target, route="svc")
