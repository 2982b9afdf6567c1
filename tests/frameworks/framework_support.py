"""Helpers for the framework tests, imported by name (``conftest`` is ambiguous)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_python(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A child Python with tests/frameworks importable, its output captured as text."""
    full_env = {**os.environ, **env,
                "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, *args], env=full_env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
