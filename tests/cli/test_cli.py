"""The command-line programs, run as real processes on 127.0.0.1.

Every process is killed in a ``finally`` block; output is read with deadlines by a reader thread,
never by sleeping.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pytest
import requests
from support import LOOPBACK, TargetService, wait_for

ROOT = Path(__file__).resolve().parents[2]
RUN_ROUTER = str(ROOT / "scripts" / "run_router.py")
RUN_CONNECTOR = str(ROOT / "scripts" / "run_connector.py")
DEADLINE = 20.0


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any CRANK_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRANK_")}
    env.update(extra)
    return env


class Proc:
    """A child process whose stdout lines arrive on a queue (read by a plain thread)."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env if env is not None else clean_env(), cwd=ROOT,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="test-cli-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = DEADLINE) -> str:
        """The first stdout line starting with ``prefix``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line within {timeout}s") from None
            if line is None:
                raise AssertionError(f"process ended before printing {prefix!r}: "
                                     f"{self.stderr_now()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def stderr_now(self) -> str:
        if self.popen.poll() is None or self.popen.stderr is None:
            return "(still running)"
        return self.popen.stderr.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(DEADLINE)
        self._reader.join(DEADLINE)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def running(args: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Proc]:
    proc = Proc(args, env)
    try:
        yield proc
    finally:
        proc.kill()


def router_ports(proc: Proc) -> tuple[int, int]:
    return int(proc.expect("router http port:")), int(proc.expect("router registration port:"))


def run(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT,
                          env=env if env is not None else clean_env(), timeout=DEADLINE)


def print_config(args: Sequence[str], env: dict[str, str] | None = None) -> dict:
    done = run([*args, "--print-config"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- router lifecycle


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_router_starts_on_port_0_and_stops_on_signal(sig: int) -> None:
    args = [sys.executable, RUN_ROUTER, "--http-port", "0", "--registration-port", "0",
            "--host", LOOPBACK, "--log-level", "WARNING"]
    with running(args) as proc:
        http_port, registration_port = router_ports(proc)
        assert http_port > 0 and registration_port > 0 and http_port != registration_port
        response = requests.get(f"http://{LOOPBACK}:{http_port}/nobody-here/", timeout=DEADLINE)
        assert response.status_code == 404
        assert proc.stop(sig) == 0


def test_router_ports_from_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text('host = "127.0.0.1"\nhttp_port = 0\nregistration_port = 1\n')
    env = clean_env(CRANK_ROUTER_REGISTRATION_PORT="0", CRANK_ROUTER_LOG_LEVEL="WARNING")
    with running([sys.executable, RUN_ROUTER, "--config", str(config)], env) as proc:
        http_port, registration_port = router_ports(proc)  # port 1 from the file lost to env
        assert http_port > 0 and registration_port > 1
        assert proc.stop() == 0


def test_router_and_connector_scripts_end_to_end(target: TargetService) -> None:
    router_args = [sys.executable, RUN_ROUTER, "--http-port", "0", "--registration-port", "0",
                   "--log-level", "WARNING"]
    with running(router_args) as router:
        http_port, registration_port = router_ports(router)
        connector_args = [
            sys.executable, RUN_CONNECTOR, "--router", f"ws://{LOOPBACK}:{registration_port}",
            "--route", "cli-test", "--target", target.url, "--window", "1",
            "--component", "cli", "--protocol", "1.0", "--stop-timeout", "5",
            "--log-level", "WARNING",
        ]
        with running(connector_args) as connector:
            connector.expect("connector ")
            url = f"http://{LOOPBACK}:{http_port}/cli-test/echo"

            def ok() -> bool:
                response = requests.get(url, timeout=DEADLINE)
                return response.status_code == 200 and response.headers["X-Target-Name"] == "target"

            wait_for(ok, timeout=DEADLINE, what="a 200 through the connector")
            assert connector.stop() == 0
        assert router.stop() == 0


# --------------------------------------------------------------------------- errors

INVALID = [
    # program, argv, extra env, toml, setting named in the error
    (RUN_ROUTER, ["--http-port", "abc"], {}, None, "http_port"),
    (RUN_ROUTER, ["--http-port", "70000"], {}, None, "http_port"),
    (RUN_ROUTER, [], {"CRANK_ROUTER_CONNECTOR_MAX_WAIT": "0"}, None, "connector_max_wait"),
    (RUN_ROUTER, [], {"CRANK_ROUTER_DRAIN_TIMEOUT": "soon"}, None, "drain_timeout"),
    (RUN_ROUTER, [], {}, "idle_timeout = -5\n", "idle_timeout"),
    (RUN_ROUTER, [], {}, "no_such_thing = 1\n", "no_such_thing"),
    (RUN_ROUTER, [], {}, "http_port = [\n", "config"),
    (RUN_ROUTER, ["--via-name", "a space"], {}, None, "via_name"),
    (RUN_ROUTER, ["--via-name", '"quoted"'], {}, None, "via_name"),
    (RUN_ROUTER, ["--via-name", "whereu@"], {}, None, "via_name"),
    (RUN_CONNECTOR, ["--route", "r", "--target", "http://127.0.0.1:1"], {}, None, "routers"),
    (RUN_CONNECTOR, ["--router", "ws://127.0.0.1:1", "--route", "r", "--target", "x"], {}, None, "target"),
    (RUN_CONNECTOR, ["--router", "ws://127.0.0.1:1", "--route", "r", "--target", "http://127.0.0.1:1", "--window", "0"], {}, None, "sliding_window"),
]


@pytest.mark.parametrize("script, argv, env, toml, setting", INVALID)
def test_invalid_values_exit_2_with_one_line(tmp_path: Path, script: str, argv: list[str],
                                             env: dict[str, str], toml: str | None,
                                             setting: str) -> None:
    if toml is not None:
        path = tmp_path / "settings.toml"
        path.write_text(toml)
        argv = [*argv, "--config", str(path)]
    done = run([sys.executable, script, *argv], clean_env(**env))
    prog = "crank-router" if script == RUN_ROUTER else "crank-connector"
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{prog}: error: {setting}: "), done.stderr


# --------------------------------------------------------------------------- precedence


def test_print_config_precedence(tmp_path: Path) -> None:
    config = tmp_path / "router.toml"
    config.write_text("http_port = 1001\nregistration_port = 1002\nidle_timeout = 3.5\n"
                      "drain_timeout = 4\n")
    env = clean_env(CRANK_ROUTER_REGISTRATION_PORT="2002", CRANK_ROUTER_IDLE_TIMEOUT="7")
    effective = print_config([sys.executable, RUN_ROUTER, "--config", str(config),
                              "--idle-timeout", "9"], env)
    assert effective["http_port"] == 1001          # file
    assert effective["registration_port"] == 2002  # env over file
    assert effective["idle_timeout"] == 9.0        # flag over env and file
    assert effective["drain_timeout"] == 4.0       # file
    assert effective["host"] == "127.0.0.1"        # default
    assert effective["log_level"] == "INFO"


def test_print_config_connector(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text('routers = ["ws://127.0.0.1:1", "ws://127.0.0.1:2"]\nroute = "svc"\n'
                      'sliding_window = 5\n')
    env = clean_env(CRANK_CONNECTOR_TARGET="http://127.0.0.1:5000",
                    CRANK_CONNECTOR_SLIDING_WINDOW="6")
    effective = print_config([sys.executable, RUN_CONNECTOR, "--config", str(config),
                              "--protocol", "1.0"], env)
    assert effective["routers"] == ["ws://127.0.0.1:1", "ws://127.0.0.1:2"]
    assert effective["target"] == "http://127.0.0.1:5000"
    assert effective["sliding_window"] == 6
    assert effective["component_name"] == "svc"
    assert effective["protocols"] == ["1.0"]


def test_help_lists_settings_with_defaults() -> None:
    done = run([sys.executable, RUN_ROUTER, "--help"])
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--http-port" in text and "default: 9000; env CRANK_ROUTER_HTTP_PORT" in text
    assert "--drain-timeout" in text and "--config FILE" in text and "--print-config" in text


# --------------------------------------------------------------------------- console scripts


def test_console_scripts_are_declared_and_run() -> None:
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("crank-router") == "crank_sync.cli:router_main"
    assert scripts.get("crank-connector") == "crank_sync.cli:connector_main"
    for name in ("crank-router", "crank-connector"):
        path = shutil.which(name, path=os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        assert path is not None, f"{name} not installed; run pip install -e ."
        done = run([path, "--help"])
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {name} "), done.stderr
