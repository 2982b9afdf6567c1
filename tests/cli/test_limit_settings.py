"""The router's limit settings (rate limits, concurrency caps, trusted proxies, the shared
store): each as a flag, a CRANK_ROUTER_ variable and a TOML key (per-route [routes.NAME]
tables); a bad value is one line naming the setting, exit status 2, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crank_sync import settings
from crank_sync.errors import SettingError
from crank_sync.limit_values import Rate, RouteLimits, limits_by_route, parse_rate
from crank_sync.settings import ROUTER

ROOT = Path(__file__).resolve().parents[2]
RUN_ROUTER = str(ROOT / "scripts" / "run_router.py")


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "router.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name, flag, env", [
    ("rate_limit", "--rate-limit", "CRANK_ROUTER_RATE_LIMIT"),
    ("rate_burst", "--rate-burst", "CRANK_ROUTER_RATE_BURST"),
    ("rate_by", "--rate-by", "CRANK_ROUTER_RATE_BY"),
    ("max_in_flight", "--max-in-flight", "CRANK_ROUTER_MAX_IN_FLIGHT"),
    ("max_queue", "--max-queue", "CRANK_ROUTER_MAX_QUEUE"),
    ("queue_timeout", "--queue-timeout", "CRANK_ROUTER_QUEUE_TIMEOUT"),
    ("routes", "--routes", "CRANK_ROUTER_ROUTES"),
    ("trusted_proxies", "--trusted-proxies", "CRANK_ROUTER_TRUSTED_PROXIES"),
    ("trusted_proxy_header", "--trusted-proxy-header", "CRANK_ROUTER_TRUSTED_PROXY_HEADER"),
    ("rate_limit_store", "--rate-limit-store", "CRANK_ROUTER_RATE_LIMIT_STORE"),
    ("rate_limit_store_timeout", "--rate-limit-store-timeout",
     "CRANK_ROUTER_RATE_LIMIT_STORE_TIMEOUT"),
    ("rate_limit_store_retry", "--rate-limit-store-retry", "CRANK_ROUTER_RATE_LIMIT_STORE_RETRY"),
])
def test_each_limit_setting_has_a_flag_and_a_variable(name: str, flag: str, env: str) -> None:
    setting = ROUTER.setting(name)
    assert setting.flags[0] == flag and setting.env == env


@pytest.mark.parametrize("text, count, per", [
    ("100/s", 100, 1), ("6000/min", 6000, 60), ("10/h", 10, 3600), ("2.5/sec", 2.5, 1),
    (" 7 / minute ", 7, 60), ("1/HOUR", 1, 3600),
])
def test_rates(text: str, count: float, per: float) -> None:
    assert parse_rate("rate_limit", text) == Rate(count, per)


@pytest.mark.parametrize("text", ["none", "off", "", None])
def test_no_rate(text: str | None) -> None:
    assert parse_rate("rate_limit", text) is None


def test_default_burst_is_a_second_of_requests() -> None:
    assert RouteLimits(rate=Rate(100, 1)).bucket_size == 100
    assert RouteLimits(rate=Rate(6000, 60)).bucket_size == 100
    assert RouteLimits(rate=Rate(10, 3600)).bucket_size == 1
    assert RouteLimits(rate=Rate(10, 1), burst=25).bucket_size == 25


def test_toml_defaults_and_route_tables(tmp_path: Path) -> None:
    path = write_toml(tmp_path, """
rate_limit = "6000/min"
rate_burst = 50
rate_by = "route+client"
max_in_flight = 8
max_queue = 4
queue_timeout = 2.5
trusted_proxies = ["10.0.0.0/8", "fd00::/8"]

[routes.my-service]
rate = "100/s"
burst = 200

[routes.slow]
max_in_flight = 2
max_queue = 0
rate = "none"

[routes."*"]
rate_by = "client"
""")
    config = settings.parse(ROUTER, ["--config", path], {}).build()
    default, routes = limits_by_route(config)
    assert default == RouteLimits(rate=Rate(6000, 60), burst=50, rate_by="route+client",
                                  max_in_flight=8, max_queue=4, queue_timeout=2.5)
    assert routes["my-service"] == RouteLimits(rate=Rate(100, 1), burst=200,
                                               rate_by="route+client", max_in_flight=8,
                                               max_queue=4, queue_timeout=2.5, own_rate=True)
    assert routes["slow"].rate is None and routes["slow"].max_in_flight == 2
    assert routes["slow"].max_queue == 0
    assert routes["*"].rate == Rate(6000, 60) and routes["*"].rate_by == "client"
    assert routes["*"].burst == 50  # the default's burst with the default's rate
    assert config.trusted_proxies == ("10.0.0.0/8", "fd00::/8")


def test_route_tables_from_flags_and_environment() -> None:
    resolved = settings.parse(ROUTER, ["--routes", "a:rate=10/s,burst=20",
                                       "--routes", "b:max_in_flight=4;c:rate=1/h"], {})
    assert resolved.build().routes == {"a": {"rate": "10/s", "burst": "20"},
                                       "b": {"max_in_flight": "4"}, "c": {"rate": "1/h"}}
    _, routes = limits_by_route(resolved.build())
    assert routes["a"].bucket_size == 20 and routes["b"].max_in_flight == 4
    env = {"CRANK_ROUTER_ROUTES": "svc:rate=5/min,rate_by=client",
           "CRANK_ROUTER_RATE_LIMIT": "100/s", "CRANK_ROUTER_MAX_IN_FLIGHT": "3"}
    config = settings.parse(ROUTER, [], env).build()
    default, routes = limits_by_route(config)
    assert default.rate == Rate(100, 1) and default.max_in_flight == 3
    assert routes["svc"].rate == Rate(5, 60) and routes["svc"].rate_by == "client"


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'rate_limit = "1/s"\nmax_in_flight = 1\n[routes.a]\nburst = 3\n')
    env = {"CRANK_ROUTER_RATE_LIMIT": "2/s", "CRANK_ROUTER_ROUTES": "b:burst=4"}
    resolved = settings.parse(ROUTER, ["--config", path, "--rate-limit", "3/s"], env)
    config = resolved.build()
    assert config.rate_limit == "3/s" and config.max_in_flight == 1
    assert config.routes == {"b": {"burst": "4"}}
    assert resolved.sources["routes"] == "CRANK_ROUTER_ROUTES"


def test_no_limit_by_default() -> None:
    config = settings.parse(ROUTER, [], {}).build()
    default, routes = limits_by_route(config)
    assert not default.active and routes == {}
    assert config.rate_limit_store is None and config.trusted_proxies == ()
    assert "routes" in settings.build_parser(ROUTER).format_help()


# setting named, argv, TOML file text (or None), text the message must contain
MISTAKES = [
    ("rate_limit", ["--rate-limit", "100/x"], None, "is not a rate"),
    ("rate_limit", ["--rate-limit", "0/s"], None, "must be positive"),
    ("rate_limit", [], 'rate_limit = 100\n', "expected a string"),
    ("rate_burst", ["--rate-burst", "-1"], None, "0 (one second's worth) or more"),
    ("rate_burst", ["--rate-burst", "many"], None, "expected an integer"),
    ("rate_by", ["--rate-by", "user"], None, "route, client, route+client"),
    ("max_in_flight", ["--max-in-flight", "-2"], None, "0 or more"),
    ("max_queue", ["--max-queue", "-1"], None, "0 or more"),
    ("queue_timeout", ["--queue-timeout", "0"], None, "must be positive"),
    ("routes", [], '[routes.a]\nrate = "10/fortnight"\n', "a: rate: '10/fortnight' is not a rate"),
    ("routes", [], '[routes.a]\nburst = "lots"\n', "a: burst: expected an integer"),
    ("routes", [], '[routes.a]\nrat = "1/s"\n', "unknown key 'rat'"),
    ("routes", [], '[routes.a]\nqueue_timeout = -1\n', "a: queue_timeout must be positive"),
    ("routes", [], 'routes = ["a"]\n', "expected NAME:key=value"),
    ("routes", [], '[routes.".."]\nrate = "1/s"\n', "'..'"),
    ("routes", ["--routes", "a:burst"], None, "expected key=value"),
    ("routes", ["--routes", "a:rate_by=me"], None, "a: rate_by must be one of"),
    ("trusted_proxies", ["--trusted-proxies", "10.0.0.0/8,not-a-net"], None,
     "'not-a-net' is not a network"),
    ("trusted_proxy_header", ["--trusted-proxy-header", "x-real-ip"], None,
     "x-forwarded-for, forwarded"),
    ("rate_limit_store", ["--rate-limit-store", "http://127.0.0.1:6379"], None,
     "must start with redis://"),
    ("rate_limit_store", ["--rate-limit-store", "redis://127.0.0.1:99999/0"], None,
     "invalid port"),
    ("rate_limit_store_timeout", ["--rate-limit-store-timeout", "0"], None, "must be positive"),
    ("rate_limit_store_retry", ["--rate-limit-store-retry", "-1"], None, "must be positive"),
]


@pytest.mark.parametrize("setting, argv, toml, expected", MISTAKES)
def test_mistakes_name_the_setting(tmp_path: Path, setting: str, argv: list[str],
                                   toml: str | None, expected: str) -> None:
    if toml is not None:
        argv = [*argv, "--config", write_toml(tmp_path, toml)]
    with pytest.raises(SettingError) as caught:
        settings.parse(ROUTER, argv, {}).build()
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{setting}: "), text
    assert expected in text, text
    assert text.count(f"{setting}:") == 1, text


@pytest.mark.parametrize("setting, argv, toml, expected", [
    MISTAKES[0], MISTAKES[9], MISTAKES[17], MISTAKES[19],
])
def test_the_program_exits_2_with_one_line(tmp_path: Path, setting: str, argv: list[str],
                                           toml: str | None, expected: str) -> None:
    if toml is not None:
        argv = [*argv, "--config", write_toml(tmp_path, toml)]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRANK_")}
    done = subprocess.run([sys.executable, RUN_ROUTER, "--http-port", "0",
                           "--registration-port", "0", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=environ, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"crank-router: error: {setting}: "), done.stderr
    assert expected in done.stderr


def test_print_config_shows_the_route_tables(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[routes.a]\nrate = "10/s"\nburst = 20\n')
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRANK_")}
    done = subprocess.run([sys.executable, RUN_ROUTER, "--config", path, "--print-config",
                           "--rate-limit-store", "redis://:pw@127.0.0.1:6379/1"],
                          capture_output=True, text=True, cwd=ROOT, env=environ, timeout=30)
    assert done.returncode == 0, done.stderr
    assert '"routes": {\n    "a": {\n      "burst": 20,\n      "rate": "10/s"' in done.stdout
    assert "pw" not in done.stdout and "redis://:***@127.0.0.1:6379/1" in done.stdout
