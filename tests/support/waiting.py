"""Waiting on a condition with a deadline: the suite's only way to synchronise (never a bare
``sleep()`` in a test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    Raises AssertionError naming ``what`` when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def standing_still(value: Callable[[], Any], seconds: float) -> Callable[[], bool]:
    """A condition for ``wait_for``: ``value()`` is truthy and has not changed for ``seconds``
    (a queue that filled up and stopped moving)."""
    last: dict[str, Any] = {"value": object(), "since": time.monotonic()}

    def still() -> bool:
        now, current = time.monotonic(), value()
        if current != last["value"]:
            last["value"], last["since"] = current, now
            return False
        return bool(current) and now - last["since"] >= seconds

    return still
