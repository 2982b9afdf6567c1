"""The router's request limits as values: rates (``100/s``), and the limits of one route.

Pure: the config (:mod:`crank_sync.config`) validates its limit settings with these, and the
router's limiter (:mod:`crank_sync.router.limiter`) reads them. A problem is a ValueError whose
text starts with the setting it is about (``rate_limit: ...``, ``routes: my-service: ...``),
so the command line can name it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .setting_values import value_of

#: What a rate limit counts: all clients of a route together, each client address, or each
#: client address on each route.
RATE_BY = ("route", "client", "route+client")

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hr": 3600.0, "hour": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$", re.IGNORECASE)
#: The keys of one ``[routes.NAME]`` table.
ROUTE_KEYS = ("rate", "burst", "rate_by", "max_in_flight", "max_queue", "queue_timeout")
_OFF = ("none", "off", "")


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``per`` seconds."""

    count: float
    per: float

    @property
    def per_second(self) -> float:
        return self.count / self.per

    def default_burst(self) -> int:
        """One second's worth of requests, at least one."""
        return max(1, math.ceil(self.per_second))

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}[self.per]
        count = int(self.count) if self.count == int(self.count) else self.count
        return f"{count}/{unit}"


def parse_rate(name: str, text: Any) -> Rate | None:
    """``"100/s"``, ``"6000/min"``, ``"10/h"`` as a Rate; ``none`` (or off) as None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in _OFF):
        return None
    match = _RATE_RE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"{name}: {text!r} is not a rate: give COUNT/s, COUNT/min or COUNT/h "
                         f"(e.g. 100/s), or none")
    count = float(match.group(1))
    if count <= 0:
        raise ValueError(f"{name}: {text!r}: the count must be positive (none: no limit)")
    return Rate(count, unit)


def check_rate_by(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in RATE_BY:
        raise ValueError(f"{name} must be one of {', '.join(RATE_BY)}, got {value!r}")
    return text


@dataclass(frozen=True)
class RouteLimits:
    """The limits one route runs under (its own table over the router-wide defaults).

    ``rate`` None: no rate limit; ``max_in_flight`` 0: no concurrency cap. ``own_rate``: the
    rate comes from the route's table, so its buckets are the route's own even when counted
    by client.
    """

    rate: Rate | None = None
    burst: int = 0
    rate_by: str = "route"
    max_in_flight: int = 0
    max_queue: int = 0
    queue_timeout: float = 10.0
    own_rate: bool = False

    @property
    def active(self) -> bool:
        return self.rate is not None or self.max_in_flight > 0

    @property
    def bucket_size(self) -> int:
        if self.rate is None:
            return 0
        return self.burst if self.burst > 0 else self.rate.default_burst()


def check_limit_numbers(prefix: str, burst: int, max_in_flight: int, max_queue: int,
                        queue_timeout: float) -> None:
    """Raise ValueError naming ``prefix`` + the field for a number out of range."""
    for field_name, value in (("burst", burst), ("max_in_flight", max_in_flight),
                              ("max_queue", max_queue)):
        if value < 0:
            raise ValueError(f"{prefix}{field_name} must be 0 or more, got {value!r}")
    if not queue_timeout > 0:
        raise ValueError(f"{prefix}queue_timeout must be positive, got {queue_timeout!r}")


def route_limits(name: str, table: Any, default: RouteLimits) -> RouteLimits:
    """One ``[routes.NAME]`` table over ``default``; ValueError naming ``routes: NAME: key``."""
    where = f"routes: {name}: "
    if not isinstance(table, Mapping):
        raise ValueError(f"routes: {name}: expected a table of {', '.join(ROUTE_KEYS)}, "
                         f"got {table!r}")
    unknown = sorted(set(table) - set(ROUTE_KEYS))
    if unknown:
        raise ValueError(f"{where}unknown key {unknown[0]!r}: the keys are "
                         f"{', '.join(ROUTE_KEYS)}")
    kinds = {"burst": int, "max_in_flight": int, "max_queue": int, "queue_timeout": float}
    values: dict[str, Any] = {}
    for key, kind in kinds.items():
        if key in table:
            try:
                values[key] = value_of(kind, table[key])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}{key}: {err}") from None
    if "rate_by" in table:
        values["rate_by"] = check_rate_by(f"{where}rate_by", table["rate_by"])
    if "rate" in table:
        values["rate"] = parse_rate(f"{where}rate", table["rate"])
        values["own_rate"] = values["rate"] is not None
        values.setdefault("burst", 0)  # the default's burst belongs to the default's rate
    merged = {**default.__dict__, **values}
    check_limit_numbers(where, merged["burst"], merged["max_in_flight"], merged["max_queue"],
                        merged["queue_timeout"])
    return RouteLimits(**merged)


def parse_route_text(text: str) -> dict[str, dict[str, str]]:
    """The command-line form of route tables: ``NAME:key=value,key=value``, several routes
    separated by ``;`` (``a:rate=10/s,burst=20;b:max_in_flight=4``)."""
    out: dict[str, dict[str, str]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, colon, rest = part.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"expected NAME:key=value,..., got {part.strip()!r}")
        table = out.setdefault(name.strip(), {})
        for pair in rest.split(","):
            if not pair.strip():
                continue
            key, equals, value = pair.partition("=")
            if not equals:
                raise ValueError(f"{name.strip()}: expected key=value, got {pair.strip()!r}")
            table[key.strip()] = value.strip()
    return out


def route_tables(raw: Any) -> dict[str, dict[str, Any]]:
    """The routes setting from TOML tables, command-line text, or a list of texts."""
    if isinstance(raw, str):
        return parse_route_text(raw)
    if isinstance(raw, list | tuple):
        merged: dict[str, dict[str, Any]] = {}
        for item in raw:
            if not isinstance(item, str):
                raise TypeError(f"expected NAME:key=value texts, got {item!r}")
            for name, table in parse_route_text(item).items():
                merged.setdefault(name, {}).update(table)
        return merged
    if isinstance(raw, Mapping):
        return {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    raise TypeError(f"expected tables [routes.NAME] or NAME:key=value texts, got {raw!r}")


def format_route_tables(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """The command-line form of ``tables`` (``none`` when empty)."""
    if not tables:
        return "none"
    return ";".join(f"{name}:" + ",".join(f"{k}={v}" for k, v in table.items())
                    for name, table in tables.items())


def default_limits(config: Any) -> RouteLimits:
    """The router-wide limits of a RouterConfig (``rate_limit``, ``rate_burst``, ``rate_by``,
    ``max_in_flight``, ``max_queue``, ``queue_timeout``), checked."""
    rate = parse_rate("rate_limit", config.rate_limit)
    check_limit_numbers("", 0, config.max_in_flight, config.max_queue, config.queue_timeout)
    if config.rate_burst < 0:
        raise ValueError(f"rate_burst must be 0 (one second's worth) or more, "
                         f"got {config.rate_burst!r}")
    return RouteLimits(rate=rate, burst=config.rate_burst,
                       rate_by=check_rate_by("rate_by", config.rate_by),
                       max_in_flight=config.max_in_flight, max_queue=config.max_queue,
                       queue_timeout=config.queue_timeout)


def limits_by_route(config: Any) -> tuple[RouteLimits, dict[str, RouteLimits]]:
    """The default limits and each route table's, of a RouterConfig."""
    default = default_limits(config)
    return default, {name: route_limits(name, table, default)
                     for name, table in config.routes.items()}
