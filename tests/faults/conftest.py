"""Fault tests with real processes (``support.processes``): the router and connectors run as
subprocesses, so SIGKILL is a real SIGKILL, and their threads and descriptors are counted before
and after each fault. This file has the fixture that owns them and the hook that shows their
logs with a failure.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.processes import Procs


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(started.logs())  # shown with the failure
    started.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
