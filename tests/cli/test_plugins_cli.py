"""Plugins on the command line: ``--plugin`` flags, ``plugins = [...]`` in a ``--config`` file,
``CRANK_ROUTER_PLUGINS``, an entry point of a distribution on ``PYTHONPATH``; and a bad plugin
spec, which is one line naming ``plugins`` and exit status 2. The router runs as a real
process (scripts/run_router.py) and its connector, where one is needed, in the test; the
connector's plugins (scripts/run_connector.py) the other way round."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import LOOPBACK, TargetService, wait_for

from .test_cli import DEADLINE, ROOT, RUN_CONNECTOR, RUN_ROUTER, clean_env, router_ports, running

PORT_0 = ["--http-port", "0", "--registration-port", "0", "--host", LOOPBACK,
          "--log-level", "WARNING"]

#: A distribution as pip would install it: a module and its .dist-info with an entry point.
PLUGIN_MODULE = '''
from crank_sync import ProxyListener, Reject


class Teapot(ProxyListener):
    def __init__(self, word="short and stout"):
        self.word = word

    def on_before_proxy_to_target(self, info, headers):
        if info.target.startswith("/teapot"):
            raise Reject(418, self.word + "\\n")


def broken(**options):
    raise RuntimeError("the plugin broke")
'''
ENTRY_POINTS = """[crank_sync.plugins]
teapot = crank_test_plugin:Teapot
broken = crank_test_plugin:broken
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory for PYTHONPATH holding the distribution ``crank-test-plugin``, and a module
    that fails to import."""
    site = tmp_path / "site"
    info = site / "crank_test_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "crank_test_plugin.py").write_text(PLUGIN_MODULE)
    (site / "crank_test_broken.py").write_text("raise RuntimeError('cannot import me')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crank-test-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


def env_with(site: Path | None = None, **extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env


def url(port: int, path: str) -> str:
    return f"http://{LOOPBACK}:{port}{path}"


def lines_of(path: Path, count: int) -> list[dict]:
    wait_for(lambda: path.exists() and path.read_text().count("\n") >= count, DEADLINE,
             f"{count} lines in {path}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plugins_from_flags_end_to_end(tmp_path: Path, target: TargetService, session,
                                       connector_factory) -> None:
    log, keys = tmp_path / "access.jsonl", tmp_path / "keys"
    keys.write_text("cli-token\n")
    args = [sys.executable, RUN_ROUTER, *PORT_0, "--plugin", f"access-log path={log}",
            "--plugin", "server-timing", "--plugin", f"header-auth token_file={keys}"]
    with running(args) as router:
        http_port, registration_port = router_ports(router)
        conn = connector_factory(target, routers=[SimpleNamespace(
            registration_port=registration_port)], route="svc", wait=False)
        wait_for(lambda: conn.idle_count() >= 2, DEADLINE, "the connector registered")
        refused = session.get(url(http_port, "/svc/bytes/5"), timeout=DEADLINE)
        assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
        ok = session.get(url(http_port, "/svc/bytes/5"),
                         headers={"Authorization": "Bearer cli-token"}, timeout=DEADLINE)
        assert ok.status_code == 200 and len(ok.content) == 5
        assert ok.headers["Server-Timing"].startswith("socket;dur=")
        assert "total;dur=" in ok.headers["Server-Timing"]
        records = lines_of(log, 2)
        assert [(r["status"], r["route"]) for r in records] == [(401, "svc"), (200, "svc")]
        assert records[1]["request_id"] == ok.headers["X-Request-Id"]
        assert router.stop() == 0


def test_plugins_from_a_config_file(tmp_path: Path, session) -> None:
    log = tmp_path / "access.jsonl"
    config = tmp_path / "router.toml"
    config.write_text(f'plugins = [\n  "header-auth header=X-Api-Key",\n'
                      f'  "access-log path=\'{log}\'",\n]\n')
    env = env_with(CRANK_AUTH_TOKENS="toml-key")
    with running([sys.executable, RUN_ROUTER, *PORT_0, "--config", str(config)], env) as router:
        http_port, _ = router_ports(router)
        assert session.get(url(http_port, "/x/y"), timeout=DEADLINE).status_code == 401
        passed = session.get(url(http_port, "/x/y"), headers={"X-Api-Key": "toml-key"},
                             timeout=DEADLINE)
        assert passed.status_code == 404  # past the check; no route x
        assert [r["status"] for r in lines_of(log, 2)] == [401, 404]
        assert router.stop() == 0


def test_a_plugin_from_an_entry_point_with_options(site: Path, session) -> None:
    args = [sys.executable, RUN_ROUTER, *PORT_0, "--plugin", "teapot word='tea time'"]
    with running(args, env_with(site)) as router:
        http_port, _ = router_ports(router)
        resp = session.get(url(http_port, "/teapot/pour"), timeout=DEADLINE)
        assert resp.status_code == 418 and resp.text == "tea time\n"
        assert router.stop() == 0


def test_plugins_from_the_environment(site: Path, session) -> None:
    env = env_with(site, CRANK_ROUTER_PLUGINS="server-timing, teapot")
    with running([sys.executable, RUN_ROUTER, *PORT_0], env) as router:
        http_port, _ = router_ports(router)
        resp = session.get(url(http_port, "/teapot"), timeout=DEADLINE)
        assert resp.status_code == 418 and resp.text == "short and stout\n"
        assert router.stop() == 0


def test_print_config_shows_the_plugins_without_loading_them() -> None:
    done = subprocess.run([sys.executable, RUN_ROUTER, "--plugin", "nosuch:thing",
                           "--plugin", "header-auth routes=a|b", "--print-config"],
                          capture_output=True, text=True, cwd=ROOT, env=env_with(),
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plugins"] == ["nosuch:thing", "header-auth routes=a|b"]


def test_connector_plugins_from_flags_and_a_config_file(tmp_path: Path, target: TargetService,
                                                        router_factory, session) -> None:
    router = router_factory()
    log = tmp_path / "connector.jsonl"
    config = tmp_path / "connector.toml"
    config.write_text(f'plugins = ["access-log path={log}"]\n')
    for extra in (["--plugin", f"access-log path={log}"], ["--config", str(config)]):
        args = [sys.executable, RUN_CONNECTOR, "--router",
                f"ws://{LOOPBACK}:{router.registration_port}", "--route", "svc", "--target",
                target.url, "--window", "1", "--log-level", "WARNING", *extra]
        with running(args) as connector:
            connector.expect("connector ")
            resp = session.get(url(router.http_port, "/svc/bytes/7"), timeout=DEADLINE)
            assert resp.status_code == 200
            assert connector.stop() == 0
    records = lines_of(log, 2)
    assert [(r["status"], r["bytes_out"], r["route"]) for r in records] == [(200, 7, "svc")] * 2


@pytest.mark.parametrize("spec, expected", [
    ("server-timing", "'server-timing': made a router listener (ServerTiming): give it to "
                      "crank-router"),
    ("nosuch_module_x:make", "no module named 'nosuch_module_x'"),
])
def test_a_bad_connector_plugin_is_one_line_and_exit_2(spec: str, expected: str) -> None:
    done = subprocess.run([sys.executable, RUN_CONNECTOR, "--router", "ws://127.0.0.1:1",
                           "--route", "svc", "--target", "http://127.0.0.1:1", "--plugin", spec],
                          capture_output=True, text=True, cwd=ROOT, env=env_with(),
                          timeout=DEADLINE)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("crank-connector: error: plugins: "), done.stderr
    assert expected in done.stderr and "(from --plugins/--plugin)" in done.stderr


# --------------------------------------------------------------------------- mistakes

# argv (or, for "toml", the file's plugins array), what the one line must contain
BAD = [
    (["--plugin", "nosuch_module_x:make"], "no module named 'nosuch_module_x': install it or add its directory to PYTHONPATH"),
    (["--plugin", "os:nosuch"], "'os' has no attribute 'nosuch'"),
    (["--plugin", "os.path:sep"], "is a str, not a factory"),
    (["--plugin", "builtins:dict"], "made a dict, not a router listener"),
    (["--plugin", "crank_sync.hooks:ConnectorListener"], "made a connector listener (ConnectorListener): give it to crank-connector"),
    (["--plugin", "no-such-plugin"], "no plugin named 'no-such-plugin': give module:factory"),
    (["--plugin", "broken"], "broken raised RuntimeError: the plugin broke"),
    (["--plugin", "crank_test_broken:x"], "importing 'crank_test_broken' failed: RuntimeError: cannot import me"),
    (["--plugin", "header-auth"], "no tokens: set CRANK_AUTH_TOKENS"),
    (["--plugin", "header-auth token_file={tmp}/missing"], "cannot read token_file"),
    (["--plugin", "access-log path={tmp}/no/such/dir/a.jsonl"], "cannot open"),
    (["--plugin", "access-log colour=red"], "unexpected keyword argument 'colour' (options are its keyword arguments)"),
    (["--plugin", "access-log /var/log/a.jsonl"], "'/var/log/a.jsonl' is not an option key=value"),
    (["--plugin", "access-log path='unclosed"], "No closing quotation"),
    (["--plugin", "access-log path=a path=b"], "option 'path' is given twice"),
    (["--plugin", "my-mod:make"], "'my-mod:make' is neither a plugin name nor module:factory"),
    (["--plugin", "header-auth routes=a,b"], "no plugin named 'b'"),
    ("toml", "no module named 'from_the_file'"),
]


@pytest.mark.parametrize("argv, expected", BAD)
def test_a_bad_plugin_spec_is_one_line_and_exit_2(tmp_path: Path, site: Path, argv,
                                                  expected: str) -> None:
    if argv == "toml":
        config = tmp_path / "router.toml"
        config.write_text('plugins = ["from_the_file:make"]\n')
        argv, source = ["--config", str(config)], str(config)
    else:
        argv, source = [a.replace("{tmp}", str(tmp_path)) for a in argv], "--plugins/--plugin"
    done = subprocess.run([sys.executable, RUN_ROUTER, *PORT_0, *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env_with(site), timeout=DEADLINE)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("crank-router: error: plugins: "), done.stderr
    assert expected in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith(f"(from {source})"), done.stderr
