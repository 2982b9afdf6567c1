"""crank_sync/plugin_loader.py: the spec syntax, how a name is found (shipped, entry point,
module:factory), what a factory must return, and that no plugins cost nothing. In-process; the
command line's side is tests/cli/test_plugins_cli.py."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from crank_sync import (
    ConnectorListener,
    PluginError,
    ProxyListener,
    RouterConfig,
    SettingError,
    plugin_loader,
)
from crank_sync.plugin_loader import BUILTIN, GROUP, load_plugins, parse_spec
from crank_sync.plugins import AccessLog, ServerTiming

ROOT = Path(__file__).resolve().parents[2]

GOOD = [
    ("server-timing", "server-timing", {}),
    ("  access-log   path=/tmp/a.jsonl ", "access-log", {"path": "/tmp/a.jsonl"}),
    ("access-log path='/my logs/a.jsonl'", "access-log", {"path": "/my logs/a.jsonl"}),
    ('pkg.mod:Class.make a=1 b= c=x=y', "pkg.mod:Class.make", {"a": "1", "b": "", "c": "x=y"}),
    ("header-auth routes=api|admin", "header-auth", {"routes": "api|admin"}),
    ("my_plugin.v2", "my_plugin.v2", {}),
]

BAD = [
    ("", "empty"),
    ("   ", "empty"),
    ("access-log /tmp/a", "'/tmp/a' is not an option key=value"),
    ("access-log =x", "'=x' is not an option key=value"),
    ("access-log 1x=2", "'1x=2' is not an option key=value"),
    ("access-log a=1 a=2", "option 'a' is given twice"),
    ("access-log a='x", "No closing quotation"),
    ("mod:", "neither a plugin name nor module:factory"),
    (":factory", "neither a plugin name nor module:factory"),
    ("a-b:c", "neither a plugin name nor module:factory"),
    ("mod:fac:tory", "neither a plugin name nor module:factory"),
    ("-x", "neither a plugin name nor module:factory"),
]


@pytest.mark.parametrize("spec, name, options", GOOD)
def test_a_spec_is_a_name_and_options(spec, name, options):
    assert parse_spec(spec) == (name, options)


@pytest.mark.parametrize("spec, message", BAD)
def test_a_bad_spec_names_the_setting(spec, message):
    with pytest.raises(ValueError, match=r"^plugins: ") as caught:
        parse_spec(spec)
    assert message in str(caught.value)
    with pytest.raises(PluginError) as loading:
        load_plugins([spec], "router")
    assert loading.value.setting == "plugins" and loading.value.spec == spec
    assert message in str(loading.value)


def test_connector_config_checks_the_syntax_only():
    from crank_sync import ConnectorConfig

    base = dict(target="http://127.0.0.1:1", route="svc", routers=["ws://127.0.0.1:1"])
    assert ConnectorConfig(**base, plugins="access-log").plugins == ("access-log",)
    with pytest.raises(ValueError, match=r"^plugins: 'access-log a=1 a=2': option 'a'"):
        ConnectorConfig(**base, plugins=["access-log a=1 a=2"])


def test_router_config_checks_the_syntax_only():
    assert RouterConfig(plugins="server-timing").plugins == ("server-timing",)
    assert RouterConfig(plugins=["nosuch:thing"]).plugins == ("nosuch:thing",)  # not loaded
    with pytest.raises(ValueError, match=r"^plugins: 'access-log x': "):
        RouterConfig(plugins=["access-log x"])


def test_a_plugin_error_is_a_setting_error():
    err = PluginError("x:y", "went wrong")
    assert isinstance(err, SettingError) and isinstance(err, ValueError)
    assert str(err) == "plugins: 'x:y': went wrong"


def test_the_shipped_names_are_the_entry_points_of_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    offered = dict(line.split(" = ") for line in
                   parser["options.entry_points"][GROUP].strip().splitlines())
    assert offered == BUILTIN


def test_shipped_plugins_by_name_and_module_factory(monkeypatch):
    monkeypatch.setenv("CRANK_AUTH_TOKENS", "t")
    made = load_plugins(["server-timing", "crank_sync.plugins:ServerTiming", "header-auth",
                         "access-log path=-"], "router")
    assert [type(m).__name__ for m in made] == ["ServerTiming", "ServerTiming", "HeaderAuth",
                                                "AccessLog"]
    assert made[0] is not made[1]


class DuckListener:
    """Not a ProxyListener, but has a callback: accepted, as Router(listeners=) accepts it."""

    def on_complete(self, info):
        pass


class BothSides(ProxyListener, ConnectorListener):
    pass


def make_duck():
    return DuckListener()


def test_what_a_factory_must_return():
    assert type(load_plugins([f"{__name__}:make_duck"], "router")[0]) is DuckListener
    assert type(load_plugins([f"{__name__}:BothSides"], "connector")[0]) is BothSides
    assert type(load_plugins(["access-log path=-"], "connector")[0]) is AccessLog
    with pytest.raises(PluginError, match="made a router listener .*crank-router"):
        load_plugins([f"{__name__}:ServerTiming"], "connector")
    with pytest.raises(PluginError, match="made a connector listener"):
        load_plugins(["crank_sync:ConnectorListener"], "router")
    with pytest.raises(PluginError, match="made a NoneType, not a router listener"):
        load_plugins(["builtins:print"], "router")


def test_a_factory_that_raises_is_named(monkeypatch):
    monkeypatch.delenv("CRANK_AUTH_TOKENS", raising=False)
    with pytest.raises(PluginError, match=r"^plugins: 'header-auth': no tokens: set "):
        load_plugins(["header-auth"], "router")
    with pytest.raises(PluginError, match=r"ServerTiming raised TypeError: .* \(options are"):
        load_plugins(["server-timing x=1"], "router")


def _distribution(site: Path, dist: str, module: str, entry_points: str) -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entry_points}\n")
    (site / f"{module}.py").write_text(
        "from crank_sync import ProxyListener\n\n"
        "class Mine(ProxyListener):\n"
        "    def __init__(self, **options):\n"
        "        self.options = options\n\n"
        "    def on_complete(self, info):\n"
        "        pass\n")


def test_entry_points_one_or_several(tmp_path, monkeypatch):
    for n in (1, 2):
        _distribution(tmp_path / f"site{n}", f"crank_loader_test{n}", f"crank_loader_mod{n}",
                      f"mine = crank_loader_mod{n}:Mine\nonly{n} = crank_loader_mod{n}:Mine")
        monkeypatch.syspath_prepend(str(tmp_path / f"site{n}"))
    made = load_plugins(["only1 colour=blue", "only2"], "router")
    assert [m.options for m in made] == [{"colour": "blue"}, {}]
    assert type(made[0]).__module__ == "crank_loader_mod1"
    assert {"only1", "only2", "mine", *BUILTIN} <= set(plugin_loader.available())
    with pytest.raises(PluginError, match=r"several distributions offer 'mine': "
                                          r"crank_loader_mod1:Mine \(crank_loader_test1\)"):
        load_plugins(["mine"], "router")


def test_a_missing_name_is_reported_before_a_factory_runs(monkeypatch):
    monkeypatch.delenv("CRANK_AUTH_TOKENS", raising=False)
    with pytest.raises(PluginError, match=r"^plugins: 'b': no plugin named 'b'.*a comma "):
        load_plugins(["header-auth routes=a", "b"], "router")


def test_no_plugins_load_nothing():
    code = ("import sys\n"
            "from crank_sync import Router\n"
            "router = Router(http_port=0, registration_port=0)\n"
            "assert router.listeners == ()\n"
            "assert not [m for m in sys.modules if m.startswith('crank_sync.plugins')]\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr


def test_shipped_classes_are_exported():
    assert AccessLog.__module__ == "crank_sync.plugins.access_log"
    assert issubclass(ServerTiming, ProxyListener)
