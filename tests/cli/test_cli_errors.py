"""A user's mistake on the command line: one line naming the setting (and the file), exit status 2,
before anything starts, and never a traceback. The scripts run as real processes."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import LOOPBACK

ROOT = Path(__file__).resolve().parents[2]
RUN_ROUTER = str(ROOT / "scripts" / "run_router.py")
RUN_CONNECTOR = str(ROOT / "scripts" / "run_connector.py")
DEADLINE = 30.0

#: Placeholders in the tables below: a file that does not exist, one that does (and is no
#: certificate, key or CA file), a port something already listens on.
MISSING, PRESENT, BUSY = "{missing}", "{present}", "{busy}"


def _connector(*argv: str) -> list[str]:
    base = {"--router": "ws://127.0.0.1:1", "--route": "svc", "--target": "http://127.0.0.1:1"}
    given = dict(zip(argv[::2], argv[1::2], strict=True))
    return [arg for name, value in {**base, **given}.items() for arg in (name, value)]


# program, argv, extra environment, setting named, text the line must contain
ERRORS = [
    (RUN_CONNECTOR, _connector("--router", "ws://127.0.0.1:notaport"), {}, "routers", "invalid port"),
    (RUN_CONNECTOR, _connector("--router", "ws://"), {}, "routers", "no host"),
    (RUN_CONNECTOR, _connector("--router", "http://127.0.0.1:9070"), {}, "routers", "ws://"),
    (RUN_CONNECTOR, _connector("--target", "http://127.0.0.1:notaport"), {}, "target", "invalid port"),
    (RUN_CONNECTOR, _connector("--target", "http://"), {}, "target", "no host"),
    (RUN_CONNECTOR, _connector("--target", "http://127.0.0.1:99999"), {}, "target", "invalid port"),
    (RUN_CONNECTOR, _connector("--target", "http://127.0.0.1:0"), {}, "target", "invalid port"),
    (RUN_CONNECTOR, _connector("--ca-file", MISSING), {}, "ca_file", MISSING),
    (RUN_CONNECTOR, _connector("--client-cert", MISSING, "--client-key", PRESENT), {}, "client_cert", MISSING),
    (RUN_CONNECTOR, _connector("--client-cert", PRESENT, "--client-key", MISSING), {}, "client_key", MISSING),
    (RUN_CONNECTOR, _connector("--client-cert", PRESENT), {}, "client_cert", "client_key"),
    (RUN_CONNECTOR, _connector("--target-ca-file", MISSING), {}, "target_ca_file", MISSING),
    (RUN_CONNECTOR, _connector("--route", ""), {}, "route", "'*' for the catch-all"),
    (RUN_CONNECTOR, _connector("--route", "  "), {}, "route", "'*' for the catch-all"),
    (RUN_ROUTER, ["--registration-token-file", MISSING], {}, "registration_token_file", MISSING),
    (RUN_ROUTER, ["--tls-cert", MISSING, "--tls-key", PRESENT], {}, "tls_cert", MISSING),
    (RUN_ROUTER, ["--tls-cert", PRESENT, "--tls-key", MISSING], {}, "tls_key", MISSING),
    (RUN_ROUTER, ["--registration-tls-cert", MISSING, "--registration-tls-key", PRESENT], {}, "registration_tls_cert", MISSING),
    (RUN_ROUTER, ["--http-port", BUSY, "--registration-port", "0"], {}, "http_port", f"port {BUSY} on 127.0.0.1 is already in use"),
    (RUN_ROUTER, ["--http-port", "0", "--registration-port", BUSY], {}, "registration_port", f"port {BUSY} on 127.0.0.1 is already in use"),
    (RUN_ROUTER, ["--registration-port", "0"], {"CRANK_ROUTER_HTTP_PORT": BUSY}, "http_port", "set by CRANK_ROUTER_HTTP_PORT"),
    (RUN_ROUTER, ["--registration-allow", "10.0.0.0/33"], {}, "registration_allow", "'10.0.0.0/33' is not a network"),
    # files that exist but are no PEM certificate or key: found as the router or connector starts
    (RUN_ROUTER, ["--http-port", "0", "--registration-port", "0", "--tls-cert", PRESENT, "--tls-key", PRESENT], {}, "tls_cert", "both must be PEM files"),
    (RUN_ROUTER, ["--http-port", "0", "--registration-port", "0", "--registration-tls-cert", PRESENT, "--registration-tls-key", PRESENT], {}, "registration_tls_cert", "both must be PEM files"),
    (RUN_CONNECTOR, _connector("--router", "wss://127.0.0.1:1", "--ca-file", PRESENT), {}, "ca_file", f"cannot load the CA certificates '{PRESENT}'"),
    (RUN_CONNECTOR, _connector("--router", "wss://127.0.0.1:1", "--client-cert", PRESENT, "--client-key", PRESENT), {}, "client_cert", "both must be PEM files"),
    (RUN_CONNECTOR, _connector("--target", "https://127.0.0.1:1", "--target-ca-file", PRESENT), {}, "target_ca_file", f"cannot load the CA certificates '{PRESENT}'"),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        yield listener.getsockname()[1]


def _fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


@pytest.mark.parametrize("script, argv, env, setting, expected", ERRORS)
def test_mistake_gets_one_line_and_exit_2(tmp_path: Path, busy_port: int, script: str,
                                         argv: list[str], env: dict[str, str], setting: str,
                                         expected: str) -> None:
    present = tmp_path / "present.pem"
    present.write_text("not checked here\n")
    values = {MISSING: str(tmp_path / "missing.pem"), PRESENT: str(present),
              BUSY: str(busy_port)}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRANK_")}
    environ.update({k: _fill(v, values) for k, v in env.items()})
    done = subprocess.run([sys.executable, script, *(_fill(a, values) for a in argv)],
                          capture_output=True, text=True, cwd=ROOT, env=environ,
                          timeout=DEADLINE)
    prog = "crank-router" if script == RUN_ROUTER else "crank-connector"
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{prog}: error: {setting}: "), done.stderr
    assert _fill(expected, values) in done.stderr
    # the setting is named once, not "x: x ..."
    assert done.stderr.count(f"{setting}:") == 1, done.stderr


def test_password_of_a_bad_target_is_not_echoed() -> None:
    done = subprocess.run(
        [sys.executable, RUN_CONNECTOR, *_connector("--target", "http://user:s3cret@127.0.0.1:99999")],
        capture_output=True, text=True, cwd=ROOT, timeout=DEADLINE)
    assert done.returncode == 2
    assert "s3cret" not in done.stderr and "user:***@" in done.stderr, done.stderr


def test_print_config_masks_the_target_password() -> None:
    done = subprocess.run(
        [sys.executable, RUN_CONNECTOR, *_connector("--target", "http://user:s3cret@127.0.0.1:5000"),
         "--print-config"], capture_output=True, text=True, cwd=ROOT, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout and '"http://user:***@127.0.0.1:5000"' in done.stdout


def test_an_address_not_of_this_machine_names_host() -> None:
    """(Built by hand: the test binds nothing but loopback.)"""
    from crank_sync import ListenError, cli, settings

    resolved = settings.parse(settings.ROUTER, [], {})
    err = ListenError(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
                      "http_port", "192.0.2.1", 9000)
    assert cli._listen_error(resolved, err) == (
        "crank-router: error: host: cannot listen on '192.0.2.1': Cannot assign requested "
        "address: give an address of this machine with --host or CRANK_ROUTER_HOST "
        "(e.g. 127.0.0.1)")
    busy = ListenError(OSError(errno.EADDRINUSE, "Address already in use"), "http_port",
                       "127.0.0.1", 9000)
    assert cli._listen_error(resolved, busy).startswith(
        "crank-router: error: http_port: port 9000 on 127.0.0.1 is already in use (the default): "
        "stop what listens there or choose another port with --http-port or CRANK_ROUTER_HTTP_PORT")


@pytest.mark.parametrize("script, argv, flag", [
    (RUN_ROUTER, ["--registration-port", "0"], "--http"),
    (RUN_CONNECTOR, _connector(), "--targ"),
])
def test_an_abbreviated_flag_is_refused(script: str, argv: list[str], flag: str) -> None:
    """argparse would take ``--http`` as ``--http-port``; here it is an unknown flag."""
    done = subprocess.run([sys.executable, script, *argv, flag, "1"], capture_output=True,
                          text=True, cwd=ROOT, timeout=DEADLINE)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"unrecognized arguments: {flag} 1" in done.stderr, done.stderr

