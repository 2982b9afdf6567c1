"""Pure tests of crank_sync.settings: derivation, precedence, conversion and error messages."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from crank_sync import settings
from crank_sync.config import ConnectorConfig, RouterConfig
from crank_sync.settings import CONNECTOR, ROUTER, SettingError

CONNECTOR_ARGS = ["--router", "ws://127.0.0.1:9070", "--route", "svc",
                  "--target", "http://127.0.0.1:5000"]


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- derivation


@pytest.mark.parametrize("spec, cls", [(ROUTER, RouterConfig), (CONNECTOR, ConnectorConfig)])
def test_every_config_field_is_a_setting(spec: settings.Spec, cls: type) -> None:
    names = {s.name for s in spec.settings}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("setting", True):  # objects given in code (listeners)
            assert f.name not in names
            continue
        assert f.name in names
        s = spec.setting(f.name)
        assert s.flags[0] == "--" + f.name.replace("_", "-")
        assert s.env == spec.env_prefix + f.name.upper()


def test_command_line_only_settings() -> None:
    assert ROUTER.setting("drain_timeout").default == 30.0
    assert ROUTER.setting("log_level").default == "INFO"
    assert CONNECTOR.setting("stop_timeout").default == 10.0


@pytest.mark.parametrize("name, flag", [
    ("sliding_window", "--window"),
    ("component_name", "--component"),
    ("routers", "--router"),
    ("protocols", "--protocol"),
])
def test_historical_connector_flags(name: str, flag: str) -> None:
    assert flag in CONNECTOR.setting(name).flags


def test_field_docs_come_from_hash_colon_comments() -> None:
    docs = settings.field_docs(RouterConfig)
    assert docs["connector_max_wait"].startswith("How long a client request waits")
    assert "host" not in docs
    assert ROUTER.setting("via_name").help == "Name used in Via and Forwarded: by="


def test_a_new_field_becomes_flag_env_and_key(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Demo:
        #: Widgets per gadget.
        widget_count: int = 3
        names: tuple[str, ...] = ("a",)
        enabled: bool = False

    spec = settings.derive(Demo, "demo", "Demo.", "DEMO_")
    assert spec.setting("widget_count").help == "Widgets per gadget"
    assert settings.parse(spec, ["--widget-count", "7"], {}).values["widget_count"] == 7
    assert settings.parse(spec, [], {"DEMO_WIDGET_COUNT": "8"}).values["widget_count"] == 8
    path = write_toml(tmp_path, 'widget_count = 9\nnames = ["x", "y"]\nenabled = true\n')
    resolved = settings.parse(spec, ["--config", path], {})
    assert resolved.values == {"widget_count": 9, "names": ("x", "y"), "enabled": True}
    assert resolved.build() == Demo(widget_count=9, names=("x", "y"), enabled=True)


def test_help_names_each_setting_default_and_env() -> None:
    text = " ".join(settings.build_parser(ROUTER).format_help().split())
    for s in ROUTER.settings:
        assert s.flags[0] in text
        assert s.env in text
    assert "default: 9000; env CRANK_ROUTER_HTTP_PORT" in text
    assert "default: 30.0; env CRANK_ROUTER_DRAIN_TIMEOUT" in text
    connector = " ".join(settings.build_parser(CONNECTOR).format_help().split())
    assert "default: required; env CRANK_CONNECTOR_TARGET" in connector
    assert "default: the value of route" in connector


# --------------------------------------------------------------------------- precedence

PRECEDENCE = [
    # flag, env, file, expected value, expected source
    (None, None, None, 9000, "default"),
    (None, None, 9003, 9003, "file"),
    (None, "9002", 9003, 9002, "CRANK_ROUTER_HTTP_PORT"),
    ("9001", "9002", 9003, 9001, "--http-port"),
    ("9001", None, 9003, 9001, "--http-port"),
    ("9001", None, None, 9001, "--http-port"),
    (None, "9002", None, 9002, "CRANK_ROUTER_HTTP_PORT"),
    (None, "", 9003, 9003, "file"),  # an empty variable counts as unset
]


@pytest.mark.parametrize("flag, env, file, expected, source", PRECEDENCE)
def test_precedence_flag_env_file_default(tmp_path: Path, flag: str | None, env: str | None,
                                          file: int | None, expected: int, source: str) -> None:
    argv = ["--http-port", flag] if flag is not None else []
    environ = {"CRANK_ROUTER_HTTP_PORT": env} if env is not None else {}
    if file is not None:
        argv += ["--config", write_toml(tmp_path, f"http_port = {file}\n")]
    resolved = settings.parse(ROUTER, argv, environ)
    assert resolved.values["http_port"] == expected
    assert resolved.sources["http_port"] == (str(tmp_path / "settings.toml")
                                             if source == "file" else source)
    assert resolved.build().http_port == expected


def test_precedence_is_per_setting(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'host = "127.0.0.2"\nhttp_port = 1\nregistration_port = 2\n')
    resolved = settings.parse(ROUTER, ["--http-port", "11"],
                              {"CRANK_ROUTER_REGISTRATION_PORT": "22"})
    assert resolved.values["http_port"] == 11
    resolved = settings.parse(ROUTER, ["--http-port", "11", "--config", path],
                              {"CRANK_ROUTER_REGISTRATION_PORT": "22"})
    config = resolved.build()
    assert (config.host, config.http_port, config.registration_port) == ("127.0.0.2", 11, 22)


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "idle_timeout = 7\n")
    resolved = settings.parse(ROUTER, [], {"CRANK_ROUTER_CONFIG": path})
    assert resolved.values["idle_timeout"] == 7.0


def test_connector_lists_from_each_source(tmp_path: Path) -> None:
    base = ["--route", "svc", "--target", "http://127.0.0.1:5000"]
    flags = settings.parse(CONNECTOR, base + ["--router", "ws://a:1", "--router", "ws://b:1,ws://c:1"], {})
    assert flags.build().routers == ("ws://a:1", "ws://b:1", "ws://c:1")
    env = settings.parse(CONNECTOR, base, {"CRANK_CONNECTOR_ROUTERS": "ws://a:1, ws://b:1"})
    assert env.build().routers == ("ws://a:1", "ws://b:1")
    path = write_toml(tmp_path, 'routers = ["ws://f:1", "ws://g:1"]\nprotocols = ["1.0"]\n')
    file = settings.parse(CONNECTOR, base + ["--config", path], {})
    assert file.build().routers == ("ws://f:1", "ws://g:1")
    assert file.build().protocols == ("1.0",)


def test_connector_historical_flags_and_defaults() -> None:
    config = settings.parse(CONNECTOR, CONNECTOR_ARGS + ["--window", "4", "--protocol", "1.0",
                                                         "--protocol", "3.0"], {}).build()
    assert config.sliding_window == 4
    assert config.protocols == ("1.0", "3.0")
    assert config.component_name == "svc"  # defaults to the route
    named = settings.parse(CONNECTOR, CONNECTOR_ARGS + ["--component", "billing"], {}).build()
    assert named.component_name == "billing"
    default = settings.parse(CONNECTOR, CONNECTOR_ARGS, {}).build()
    assert default.protocols == ConnectorConfig.__dataclass_fields__["protocols"].default


@pytest.mark.parametrize("argv, expected", [
    ([], False),
    (["--x-forwarded-headers"], True),
    (["--no-x-forwarded-headers"], False),
])
def test_bool_flags(argv: list[str], expected: bool) -> None:
    env = {"CRANK_ROUTER_X_FORWARDED_HEADERS": "yes"} if argv else {}
    assert settings.parse(ROUTER, argv, env).build().x_forwarded_headers is expected


def test_print_config_flag() -> None:
    resolved = settings.parse(ROUTER, ["--print-config"], {})
    assert resolved.print_config
    effective = resolved.effective(resolved.build())
    assert effective["http_port"] == 9000 and effective["drain_timeout"] == 30.0


# --------------------------------------------------------------------------- conversion

CONVERSIONS: list[tuple[type, Any, Any]] = [
    (int, "42", 42),
    (int, " 7 ", 7),
    (int, 5, 5),
    (float, "2.5", 2.5),
    (float, "3", 3.0),
    (float, 4, 4.0),
    (bool, "true", True),
    (bool, "TRUE", True),
    (bool, "1", True),
    (bool, "yes", True),
    (bool, "false", False),
    (bool, "0", False),
    (bool, "no", False),
    (bool, True, True),
    (bool, 0, False),
    (str, "x y", "x y"),
    (tuple, "a,b", ("a", "b")),
    (tuple, " a , ,b ", ("a", "b")),
    (tuple, ["a", "b,c"], ("a", "b", "c")),
]


@pytest.mark.parametrize("kind, raw, expected", CONVERSIONS)
def test_conversions(kind: type, raw: Any, expected: Any) -> None:
    setting = settings.Setting("demo", kind, None, "", ("--demo",), "DEMO")
    value = settings.convert(setting, raw, "--demo")
    assert value == expected and type(value) is type(expected)


BAD_CONVERSIONS: list[tuple[type, Any, str]] = [
    (int, "abc", "expected an integer"),
    (int, "1.5", "expected an integer"),
    (int, True, "expected an integer"),
    (int, 1.5, "expected an integer"),
    (float, "fast", "expected a number"),
    (float, "nan", "finite"),
    (float, "inf", "finite"),
    (float, False, "expected a number"),
    (bool, "maybe", "expected true/false"),
    (bool, 2, "expected true or false"),
    (str, 5, "expected a string"),
    (tuple, 5, "expected a list of strings"),
    (tuple, [1, 2], "expected a list of strings"),
]


@pytest.mark.parametrize("kind, raw, fragment", BAD_CONVERSIONS)
def test_conversion_errors_name_setting_and_source(kind: type, raw: Any, fragment: str) -> None:
    setting = settings.Setting("demo_value", kind, None, "", ("--demo-value",), "DEMO")
    with pytest.raises(SettingError) as info:
        settings.convert(setting, raw, "DEMO_VALUE")
    text = str(info.value)
    assert text.startswith("demo_value: ") and fragment in text
    assert text.endswith("(from DEMO_VALUE)") and "\n" not in text
    assert info.value.setting == "demo_value"


def test_log_level_choices() -> None:
    assert settings.parse(ROUTER, ["--log-level", "debug"], {}).values["log_level"] == "DEBUG"
    with pytest.raises(SettingError, match=r"^log_level: must be one of DEBUG, INFO"):
        settings.parse(ROUTER, [], {"CRANK_ROUTER_LOG_LEVEL": "loud"})


# --------------------------------------------------------------------------- errors

ERRORS = [
    # spec, argv, environ, toml text, expected start of the message, expected source
    (ROUTER, ["--http-port", "x"], {}, None, "http_port: expected an integer", "--http-port"),
    (ROUTER, ["--http-port", "70000"], {}, None, "http_port: must be 0..65535", "--http-port"),
    (ROUTER, [], {"CRANK_ROUTER_IDLE_TIMEOUT": "-1"}, None, "idle_timeout: must be positive", "CRANK_ROUTER_IDLE_TIMEOUT"),
    (ROUTER, [], {}, "max_header_bytes = 10\n", "max_header_bytes: must be at least 1024", "FILE"),
    (ROUTER, [], {}, 'ping_interval = "soon"\n', "ping_interval: expected a number", "FILE"),
    (ROUTER, [], {}, "x_forwarded_headers = 2\n", "x_forwarded_headers: expected true or false", "FILE"),
    (ROUTER, [], {"CRANK_ROUTER_DRAIN_TIMEOUT": "abc"}, None, "drain_timeout: expected a number", "CRANK_ROUTER_DRAIN_TIMEOUT"),
    (ROUTER, ["--registration-max-pending", "0"], {}, None, "registration_max_pending: must be at least 1", "--registration-max-pending"),
    (ROUTER, [], {"CRANK_ROUTER_REGISTRATION_MAX_PENDING_PER_ADDRESS": "0"}, None, "registration_max_pending_per_address: must be at least 1", "CRANK_ROUTER_REGISTRATION_MAX_PENDING_PER_ADDRESS"),
    (ROUTER, [], {}, "registration_max_pending = 1.5\n", "registration_max_pending: expected an integer", "FILE"),
    (CONNECTOR, CONNECTOR_ARGS + ["--route", "a b"], {}, None, "route: invalid route", "--route"),
    (CONNECTOR, CONNECTOR_ARGS, {"CRANK_CONNECTOR_SLIDING_WINDOW": "0"}, None, "sliding_window: must be at least 1", "CRANK_CONNECTOR_SLIDING_WINDOW"),
    (CONNECTOR, CONNECTOR_ARGS + ["--router", "http://x"], {}, None, "routers: 'http://x' must start with ws://", "--routers/--router"),
    (CONNECTOR, CONNECTOR_ARGS + ["--protocol", "2.0"], {}, None, "protocols: unsupported protocol", "--protocols/--protocol"),
    (CONNECTOR, CONNECTOR_ARGS + ["--target", "ftp://x"], {}, None, "target: 'ftp://x' must start with http://", "--target"),
    (CONNECTOR, CONNECTOR_ARGS, {}, "chunk_size = 10\n", "chunk_size: must be at least 1024", "FILE"),
]


@pytest.mark.parametrize("spec, argv, environ, toml, start, source", ERRORS)
def test_errors_name_the_setting_and_its_source(tmp_path: Path, spec: settings.Spec,
                                                argv: list[str], environ: dict[str, str],
                                                toml: str | None, start: str,
                                                source: str) -> None:
    if toml is not None:
        path = write_toml(tmp_path, toml)
        argv = argv + ["--config", path]
        source = path if source == "FILE" else source
    with pytest.raises(SettingError) as info:
        settings.parse(spec, argv, environ).build()
    text = str(info.value)
    assert text.startswith(start), text
    assert text.endswith(f"(from {source})"), text
    assert "\n" not in text


@pytest.mark.parametrize("missing", ["target", "route", "routers"])
def test_required_connector_settings(missing: str) -> None:
    values = {"target": "http://127.0.0.1:5000", "route": "svc", "routers": "ws://127.0.0.1:1"}
    del values[missing]
    environ = {f"CRANK_CONNECTOR_{k.upper()}": v for k, v in values.items()}
    with pytest.raises(SettingError, match=rf"^{missing}: required: give (--|a router URL)") \
            as info:
        settings.parse(CONNECTOR, [], environ).build()  # routers: or router_dns, checked there
    assert "(from" not in str(info.value)  # never given: there is no source to name
    # all three from the environment alone is enough
    environ[f"CRANK_CONNECTOR_{missing.upper()}"] = {"target": "http://127.0.0.1:5000",
                                                     "route": "svc",
                                                     "routers": "ws://127.0.0.1:1"}[missing]
    assert settings.parse(CONNECTOR, [], environ).build().route == "svc"


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "http_prot = 1\n")
    with pytest.raises(SettingError, match=r"^http_prot: unknown setting in .*settings.toml"):
        settings.parse(ROUTER, ["--config", path], {})


def test_invalid_and_missing_files(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "http_port = \n")
    with pytest.raises(SettingError, match=r"^config: .* is not valid TOML"):
        settings.parse(ROUTER, ["--config", path], {})
    with pytest.raises(SettingError, match=r"^config: cannot read .*nope.toml"):
        settings.parse(ROUTER, ["--config", str(tmp_path / "nope.toml")], {})


def test_argparse_errors_are_setting_errors() -> None:
    with pytest.raises(SettingError, match="unrecognized arguments: --nope"):
        settings.parse(ROUTER, ["--nope"], {})
    with pytest.raises(SettingError, match="--http-port: expected one argument"):
        settings.parse(ROUTER, ["--http-port"], {})


@pytest.mark.parametrize("message, expected", [
    ("http_port must be 0..65535, got 1", "http_port"),
    ("at least one router URL is needed", "routers"),
    ("invalid route 'a b': must be '*'", "route"),
    ("unsupported protocol '2.0'; supported: ('3.0', '1.0')", "protocols"),
    ("target must be an http:// or https:// URL", "target"),
    ("something else entirely", None),
])
def test_blame(message: str, expected: str | None) -> None:
    names = [f.name for f in dataclasses.fields(ConnectorConfig)] + ["http_port"]
    assert settings.blame(message, names) == expected


def test_optional_fields() -> None:
    @dataclasses.dataclass(frozen=True)
    class Demo:
        admin_port: int | None = None

    spec = settings.derive(Demo, "demo", "Demo.", "DEMO_")
    setting = spec.setting("admin_port")
    assert setting.kind is int and setting.optional and setting.default_text() == "none"
    assert settings.parse(spec, ["--admin-port", "0"], {}).build() == Demo(admin_port=0)
    assert settings.parse(spec, [], {"DEMO_ADMIN_PORT": "None"}).build() == Demo(admin_port=None)
    with pytest.raises(SettingError, match="^admin_port: expected an integer"):
        settings.parse(spec, ["--admin-port", "x"], {})


def test_a_config_field_replaces_a_command_line_only_setting() -> None:
    """Once RouterConfig has drain_timeout, the field (its default, its help) is the setting."""
    @dataclasses.dataclass(frozen=True)
    class Demo:
        #: Seconds to drain.
        drain_timeout: float = 12.0

    spec = settings.derive(Demo, "demo", "Demo.", "DEMO_",
                           extras=[("drain_timeout", float, 30.0, "extra"), ("log_level", str, "INFO", "x")])
    assert [s.name for s in spec.settings] == ["drain_timeout", "log_level"]
    resolved = settings.parse(spec, ["--drain-timeout", "3"], {})
    assert resolved.build() == Demo(drain_timeout=3.0)
    assert resolved.values["drain_timeout"] == 3.0
    assert settings.parse(spec, [], {}).values["drain_timeout"] == 12.0
