"""One setting's value from text (a flag, the environment) or a native TOML value."""
from __future__ import annotations

import math
from typing import Any

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def value_of(kind: type, raw: Any) -> Any:
    """``raw`` as a ``kind`` (tuple, dict, bool, int, float or str); TypeError or ValueError
    with what was expected. A dict is the router's route tables (:mod:`.limit_values`)."""
    if kind is dict:
        from .limit_values import route_tables

        return route_tables(raw)
    if kind is tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise TypeError(f"expected a list of strings, got {raw!r}")
        return tuple(p.strip() for item in items for p in item.split(",") if p.strip())
    if isinstance(raw, str):
        return _from_text(kind, raw)
    return _from_native(kind, raw)


def _from_text(kind: type, raw: str) -> Any:
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected true/false/1/0/yes/no, got {raw!r}")
    if kind is int:
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return number
    return raw


def _from_native(kind: type, raw: Any) -> Any:
    """Native TOML values (and booleans from --flag / --no-flag)."""
    if kind is bool and (isinstance(raw, bool) or (isinstance(raw, int) and raw in (0, 1))):
        return bool(raw)
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        if not math.isfinite(raw):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return float(raw)
    expected = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
    raise TypeError(f"expected {expected}, got {raw!r}")
