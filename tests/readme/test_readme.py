"""Every code block of README.rst, run as written against a real router, connector and service.

The literal blocks (``::`` and ``.. code-block::``) are extracted from README.rst, and each must
be classified in :data:`BLOCKS` below (by a line it contains): a block nobody classified fails
:func:`test_every_block_is_classified`, so the README cannot grow an untested example.

What "as written" allows, and nothing more:

* the well-known ports ``9000`` (client port), ``9070`` (registration port) and ``5000`` (the
  service) are replaced by free ports (:func:`rewrite_ports`, tested below); the router of the
  quick start, whose command names no port, gets them from ``CRANK_ROUTER_HTTP_PORT`` and
  ``CRANK_ROUTER_REGISTRATION_PORT``;
* ``pip install ... &&`` in front of a command is not run: the test environment is installed
  already (``.ci/wheel_check.sh`` installs from a wheel in a fresh venv);
* a Python line that is only ``...`` (the README's "your code runs here") becomes a check that
  the snippet works: a request through the router that must answer 200.

Every process runs in its own session and is killed with its whole group in a ``finally``.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from support import LOOPBACK, TargetService, closed_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.rst"
DEADLINE = 30.0


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Block:
    line: int  #: where the block starts in README.rst
    code: str


_DIRECTIVE = re.compile(r"^\s*\.\. (code-block|code|sourcecode)::")


def literal_blocks(text: str) -> list[Block]:
    """The literal blocks of reStructuredText ``text``: the indented lines after a paragraph
    that ends with ``::`` (or after a ``.. code-block::`` directive and its options)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        directive = _DIRECTIVE.match(line)
        if not line.endswith("::") and not directive or \
                line.lstrip().startswith("..") and not directive:
            i += 1
            continue
        base = len(line) - len(line.lstrip())
        j = i + 1
        if directive:
            while j < len(lines) and lines[j].strip().startswith(":"):
                j += 1
        body = []
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > base):
            body.append(lines[j])
            j += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code:
            blocks.append(Block(i + 2, code))
        i = j
    return blocks


def test_literal_blocks_parser() -> None:
    text = ("Intro::\n\n    one\n      two\n\n    three\n\nAfter.\n\n"
            "* item::\n\n      nested\n\n"
            ".. code-block:: toml\n   :caption: x\n\n   a = 1\n\n"
            ".. note:: not code\n\nEnd::\n\n    last")
    assert [b.code for b in literal_blocks(text)] == [
        "one\n  two\n\nthree", "nested", "a = 1", "last"]


# --------------------------------------------------------------------------- ports


WELL_KNOWN = {"9000": "http", "9070": "registration", "5000": "service"}


def rewrite_ports(code: str, ports: dict[str, int]) -> str:
    """The README's well-known ports replaced by the test's free ones (as whole numbers only)."""
    return re.sub(r"(?<![\w.])(9000|9070|5000)(?!\d)",
                  lambda m: str(ports[WELL_KNOWN[m.group(1)]]), code)


def test_rewrite_ports() -> None:
    ports = {"http": 41000, "registration": 41070, "service": 41500}
    code = ("python -m http.server 5000 --bind 127.0.0.1 &\n"
            "run --router ws://127.0.0.1:9070 --target http://127.0.0.1:5000/x\n"
            "curl http://127.0.0.1:9000/a; echo 19000 90700 5000.5 v9000")
    assert rewrite_ports(code, ports) == (
        "python -m http.server 41500 --bind 127.0.0.1 &\n"
        "run --router ws://127.0.0.1:41070 --target http://127.0.0.1:41500/x\n"
        "curl http://127.0.0.1:41000/a; echo 19000 90700 41500.5 v9000")


# --------------------------------------------------------------------------- classification

#: Blocks not run, each with the reason.
NOT_RUN = {
    "pip install -e '.[test]' && pip install --no-deps 'crank4py-connector==0.0.5' && "
    "python -m pytest -q":
        "runs the whole test suite, of which this test is part (.ci/run runs it)",
    "pip install '.[speed]'":
        "installs into the environment; .ci/wheel_check.sh installs from the checkout into a "
        "fresh venv",
    "pip wheel . --no-deps -w dist":
        ".ci/wheel_check.sh builds the wheel this way, installs it in a fresh venv and runs "
        "the router and a connector from it",
    "1. Small GETs (1024 B body)": "output of scripts/bench.py, not a command",
    "6. Peers (full mode;": "output of scripts/bench.py --section peers, not a command",
    "[routes.my-service]":
        "a TOML example: tests/cli/test_limit_settings.py reads these keys from a file, "
        "tests/e2e/test_rate_limits.py and test_concurrency_caps.py enforce them",
    "python -m ruff check crank_sync scripts tests":
        "the development loop (lint, types, the whole suite): .ci/run runs exactly these",
}

#: Runnable blocks: a line each contains -> the test that runs it (below).
RUN = {
    "python scripts/run_router.py": "router",
    "python scripts/run_connector.py --router ws://127.0.0.1:9070": "traffic",
    'target="http://127.0.0.1:5000",': "python_connector",
    "router = crank_sync.Router(": "python_router",
    "class RequireApiKey(crank_sync.ProxyListener):": "listener",
    "class ReadOnly(crank_sync.ConnectorListener):": "connector_listener",
    "from flask_sock import Sock": "flask_sock",
    "def app(environ, start_response):": "wsgi",
    "from flask import Blueprint, Flask": "flask_app",
    "python -c 'import app, threading": "flask_run",
    'INSTALLED_APPS += ["mysite.crank"]': "django_settings",
    "class CrankConfig(AppConfig):": "django_apps",
    "python manage.py crank_connector": "django_run",
    "class Command(BaseCommand):": "django_command",
}


def classify(block: Block) -> str:
    """The name of the block in RUN or NOT_RUN; exactly one must match."""
    names = [name for key, name in RUN.items() if key in block.code]
    names += [f"not run: {key}" for key in NOT_RUN if key in block.code]
    assert len(names) == 1, (
        f"README.rst line {block.line}: classify this block in tests/readme/test_readme.py "
        f"(matches {names}):\n{block.code}")
    return names[0]


def blocks_named() -> dict[str, Block]:
    named = {}
    for block in literal_blocks(README.read_text(encoding="utf-8")):
        name = classify(block)
        assert name not in named, f"two README blocks for {name!r}"
        named[name] = block
    return named


def test_every_block_is_classified() -> None:
    named = blocks_named()
    assert set(RUN.values()) <= set(named), f"gone from README.rst: {set(RUN.values()) - set(named)}"
    assert {n for n in named if n.startswith("not run: ")} == {f"not run: {k}" for k in NOT_RUN}


def block(name: str) -> str:
    return blocks_named()[name].code


def without_pip(code: str) -> str:
    """``pip install ... && command`` -> ``command`` (the environment is installed already)."""
    return re.sub(r"^pip install [^&\n]*&&\s*", "", code, flags=re.MULTILINE)


def test_without_pip() -> None:
    assert without_pip("pip install -e . && python x.py\nls") == "python x.py\nls"


# --------------------------------------------------------------------------- processes


def environment(**extra: str) -> dict[str, str]:
    """No CRANK_*, FLASK_* or DJANGO_* variables of the caller; the worktree's crank_sync first
    on the path, and this interpreter as ``python``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRANK_", "FLASK_", "DJANGO_"))}  # other tests set some
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


class Shell:
    """``bash -c code`` in its own session; its output lines are collected by a thread."""

    def __init__(self, code: str, cwd: Path, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(["bash", "-c", code], cwd=cwd, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="test-readme-reader",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def line_starting(self, prefix: str, *, after_exit: bool = False) -> str:
        """The first output line starting with ``prefix``. ``after_exit``: background jobs
        may still print it once the shell itself has ended."""
        found = wait_for(lambda: next((x for x in self.lines if x.startswith(prefix)), None)
                         or not after_exit and self.popen.poll() is not None and "ended",
                         timeout=DEADLINE, what=f"a line starting {prefix!r}")
        assert found != "ended", f"ended before printing {prefix!r}:\n{self.output}"
        return found

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.popen.wait(timeout)

    def kill(self, sig: int = signal.SIGINT) -> None:
        """``sig`` to the whole group (background jobs included); SIGKILL to whatever is left
        when the deadline passes."""
        pgid = self.popen.pid
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + DEADLINE
        while _live_members(pgid) and time.monotonic() < deadline:
            self.popen.poll()
            time.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(DEADLINE)
        self._reader.join(DEADLINE)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def get(url: str) -> requests.Response | None:
    try:
        with requests.Session() as s:
            s.trust_env = False
            return s.get(url, timeout=10)
    except requests.RequestException:
        return None


def wait_200(url: str, text: str) -> requests.Response:
    def ok() -> requests.Response | None:
        resp = get(url)
        return resp if resp is not None and resp.status_code == 200 and text in resp.text else None

    return wait_for(ok, timeout=DEADLINE, what=f"200 with {text!r} from {url}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def router_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """The quick start's router block, run as written on free ports."""
    http, registration = closed_port(), closed_port()
    env = environment(CRANK_ROUTER_HTTP_PORT=str(http),
                      CRANK_ROUTER_REGISTRATION_PORT=str(registration))
    shell = Shell(without_pip(block("router")), ROOT, env)
    try:
        assert shell.line_starting("router http port:") == f"router http port: {http}"
        yield {"http": http, "registration": registration}
    finally:
        shell.kill(signal.SIGTERM)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[int]:
    """A static service answering at /my-service/, on a free port."""
    root = tmp_path / "site"
    (root / "my-service").mkdir(parents=True)
    (root / "my-service" / "index.html").write_text("hello from the site\n")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="test-readme-site", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE)


def through(ports: dict[str, int], path: str = "/my-service/") -> str:
    return f"http://{LOOPBACK}:{ports['http']}{path}"


def run_shell(code: str, cwd: Path, env: dict[str, str] | None = None) -> Shell:
    return Shell(code, cwd, env or environment())


def run_python(tmp_path: Path, code: str, check: str) -> subprocess.CompletedProcess[str]:
    """A README Python snippet as a script; its ``...`` lines (or, without one, its end)
    become ``check``."""
    if re.search(r"^\.\.\.$", code, flags=re.MULTILINE):
        code = re.sub(r"^\.\.\.$", check, code, flags=re.MULTILINE)
    else:
        code = f"{code}\n{check}\n"
    script = tmp_path / "snippet.py"
    script.write_text(code)
    (tmp_path / "readme_check.py").write_text(CHECK_MODULE)
    env = environment()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=2 * DEADLINE)


#: What a snippet's ``...`` becomes: wait for a 200 (with ``text``) from ``url``, or fail.
CHECK_MODULE = '''
import time, urllib.request

def wait_200(url, text):
    deadline = time.monotonic() + 30
    while True:
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=10) as resp:
                body = resp.read().decode()
                if resp.status == 200 and text in body:
                    print("README CHECK OK", resp.status, body.strip())
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"no 200 with {text!r} from {url}")
        time.sleep(0.1)
'''


def check_line(url: str, text: str) -> str:
    return f"import readme_check; readme_check.wait_200({url!r}, {text!r})"


# --------------------------------------------------------------------------- the blocks


def test_putting_traffic_through_it(router_ports: dict[str, int], tmp_path: Path) -> None:
    ports = {**router_ports, "service": closed_port()}
    shell = run_shell(rewrite_ports(block("traffic"), ports), ROOT)
    try:
        assert shell.wait(2 * DEADLINE) == 0, shell.output
        # the block ends with the service's answer through the router: the only status line
        # printed is the last curl's (the waiting loop's go to /dev/null)
        statuses = [line for line in shell.lines if line.startswith("HTTP/1.")]
        assert statuses == ["HTTP/1.1 200 OK"], shell.output
        assert "hello from my-service" in shell.lines, shell.output
        # the connector says what it serves, once the route is registered
        line = shell.line_starting("connector ", after_exit=True)
        assert f"serving route my-service -> http://127.0.0.1:{ports['service']} via " \
               f"ws://127.0.0.1:{ports['registration']}" in line, line
    finally:
        shell.kill(signal.SIGTERM)


def test_python_connector(router_ports: dict[str, int], site: int, tmp_path: Path) -> None:
    ports = {**router_ports, "service": site}
    done = run_python(tmp_path, rewrite_ports(block("python_connector"), ports),
                      check_line(through(ports), "hello from the site"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README CHECK OK 200" in done.stdout


def test_python_router(tmp_path: Path) -> None:
    ports = {"http": closed_port(), "registration": closed_port(), "service": 1}
    health = f"http://{LOOPBACK}:{ports['registration']}/health"
    done = run_python(tmp_path, rewrite_ports(block("python_router"), ports),
                      check_line(health, '"status": "ok"'))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README CHECK OK 200" in done.stdout


#: What the listener example's ``...`` becomes: no key gets the listener's 401 (and the service
#: is never asked: there is none); a key gets past it to the router's own 404 (no connector).
LISTENER_CHECK = '''
import urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
def status(headers):
    request = urllib.request.Request("http://127.0.0.1:{http}/my-service/", headers=headers)
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)
code, body, headers = status({{}})
assert (code, body.strip(), headers["WWW-Authenticate"]) == (401, b"an X-Api-Key is needed", "ApiKey")
code, body, headers = status({{"X-Api-Key": "let-me-in"}})
assert code == 404, (code, body)
print("README CHECK OK listener")
'''


def test_listener_example(tmp_path: Path) -> None:
    ports = {"http": closed_port(), "registration": closed_port(), "service": 1}
    done = run_python(tmp_path, rewrite_ports(block("listener"), ports),
                      LISTENER_CHECK.format(http=ports["http"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README CHECK OK listener" in done.stdout
    # on_complete ran once for each request (request id, route, status, error); the two run
    # on different worker threads, so their lines may come in either order, even run together
    assert sorted(re.findall(r"my-service (\d{3})", done.stdout)) == ["401", "404"], done.stdout


#: What the connector listener example's ``...`` becomes: a GET reaches the service with the
#: listener's header; a POST gets the listener's 405 through the router.
CONNECTOR_LISTENER_CHECK = '''
import readme_check, urllib.error, urllib.request
readme_check.wait_200("{url}", '["X-Replayed-By", "crank_sync"]')
request = urllib.request.Request("{url}", data=b"change", method="POST")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
try:
    opener.open(request, timeout=10)
    raise SystemExit("the POST got past the listener")
except urllib.error.HTTPError as err:
    assert (err.code, err.headers["Allow"]) == (405, "GET, HEAD"), (err.code, dict(err.headers))
    assert err.read().strip() == b"this service is read-only"
print("README CHECK OK connector listener")
'''


def test_connector_listener_example(router_ports: dict[str, int], target: TargetService,
                                    tmp_path: Path) -> None:
    ports = {**router_ports, "service": target.port}
    done = run_python(tmp_path, rewrite_ports(block("connector_listener"), ports),
                      CONNECTOR_LISTENER_CHECK.format(url=through(ports, "/my-service/headers")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README CHECK OK connector listener" in done.stdout
    seen = target.received_for("/my-service/headers")
    assert seen and all(rec.method == "GET" for rec in seen)  # the POST never got there
    assert all(("X-Replayed-By", "crank_sync") in rec.headers for rec in seen)
    registration = f"ws://127.0.0.1:{ports['registration']}"
    assert f"{registration}: registered" in done.stdout, done.stdout
    # on_complete once per request the connector received: the GETs of the wait (200) and
    # the POST (405, rejected with no error)
    # (on_complete prints on the connector's threads: its lines may run into the check's)
    statuses = re.findall(r"[0-9a-f]{32} (GET|POST) (\d{3}) None", done.stdout)
    assert ("POST", "405") in statuses and ("GET", "200") in statuses, done.stdout


#: What the flask-sock recipe's ``...`` becomes: a websocket through the router echoes.
FLASK_SOCK_CHECK = '''
import time, websocket
deadline = time.monotonic() + 30
while True:
    try:
        ws = websocket.create_connection("ws://127.0.0.1:{http}/chat/echo", timeout=10)
        break
    except (OSError, websocket.WebSocketException):
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
ws.send("hello through the tunnel")
assert ws.recv() == "hello through the tunnel"
ws.send_binary(bytes(range(256)) * 4096)
assert ws.recv() == bytes(range(256)) * 4096
ws.close()
print("README CHECK OK flask-sock")
'''


def test_flask_sock_recipe(router_ports: dict[str, int], tmp_path: Path) -> None:
    ports = {**router_ports, "service": closed_port()}
    done = run_python(tmp_path, rewrite_ports(block("flask_sock"), ports),
                      FLASK_SOCK_CHECK.format(http=ports["http"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README CHECK OK flask-sock" in done.stdout


def test_wsgi_app_with_no_local_port(router_ports: dict[str, int], tmp_path: Path) -> None:
    ports = {**router_ports, "service": 1}
    done = run_python(tmp_path, rewrite_ports(block("wsgi"), ports),
                      check_line(through(ports), "hello from /my-service/"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README CHECK OK 200" in done.stdout


def test_flask_recipe(router_ports: dict[str, int], tmp_path: Path) -> None:
    ports = {**router_ports, "service": 1}
    (tmp_path / "app.py").write_text(rewrite_ports(block("flask_app"), ports))
    shell = run_shell(rewrite_ports(block("flask_run"), ports), tmp_path)
    try:
        wait_200(through(ports), "hello from Flask")
    finally:
        shell.kill(signal.SIGINT)  # KeyboardInterrupt: atexit stops the connector


MANAGE_PY = '''import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
'''
BASE_SETTINGS = '''SECRET_KEY = "readme test only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
'''


def django_project(tmp_path: Path, ports: dict[str, int]) -> Path:
    """A project ``mysite`` whose crank app, settings and command are the README's blocks;
    the rest (a view, urls, manage.py) is the smallest Django needs."""
    crank = tmp_path / "mysite" / "crank"
    (crank / "management" / "commands").mkdir(parents=True)
    for package in (tmp_path / "mysite", crank, crank / "management",
                    crank / "management" / "commands"):
        (package / "__init__.py").write_text("")
    (tmp_path / "manage.py").write_text(MANAGE_PY)
    (tmp_path / "mysite" / "settings.py").write_text(
        BASE_SETTINGS + rewrite_ports(block("django_settings"), ports) + "\n")
    (tmp_path / "mysite" / "urls.py").write_text(
        "from django.http import HttpResponse\nfrom django.urls import path\n"
        "urlpatterns = [path('my-service/', lambda request: HttpResponse('hello from Django'))]\n")
    (crank / "apps.py").write_text(block("django_apps") + "\n")
    (crank / "management" / "commands" / "crank_connector.py").write_text(
        block("django_command") + "\n")
    return tmp_path


def test_django_management_command(router_ports: dict[str, int], tmp_path: Path) -> None:
    ports = {**router_ports, "service": 1}
    project = django_project(tmp_path, ports)
    shell = run_shell(rewrite_ports(block("django_run"), ports), project)
    try:
        line = shell.line_starting("serving ")
        assert line == (f"serving this project at route 'my-service' through "
                        f"ws://{LOOPBACK}:{ports['registration']}")
        wait_200(through(ports), "hello from Django")
    finally:
        shell.kill(signal.SIGTERM)
    assert shell.popen.returncode == 0, shell.output  # deregistered and stopped cleanly


def test_django_app_config_connects_a_serving_process(router_ports: dict[str, int],
                                                      tmp_path: Path) -> None:
    """The README's apps.py in a process that is not manage.py (as under gunicorn): ready()
    connects it."""
    ports = {**router_ports, "service": 1}
    project = django_project(tmp_path, ports)
    serve = ("python -c 'import django, os, threading; "
             "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"mysite.settings\"); "
             "django.setup(); threading.Event().wait()'")
    shell = run_shell(serve, project)
    try:
        wait_200(through(ports), "hello from Django")
    finally:
        shell.kill(signal.SIGINT)

