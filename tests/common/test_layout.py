"""The package's size rule: no module of ``crank_sync`` over 400 lines.

A module that grows past it holds more than one idea; split it where the ideas part (ruff
keeps the other two rules of the layout: C901 at 12 and SLF001, in pyproject.toml).
"""
from __future__ import annotations

from pathlib import Path

import crank_sync

MAX_LINES = 400


def test_no_module_is_over_400_lines():
    root = Path(crank_sync.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines())
             for p in root.rglob("*.py")}
    assert len(sizes) > 50  # the walk found the package
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
