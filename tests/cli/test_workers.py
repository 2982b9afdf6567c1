"""``run_router.py --workers N``: N router processes on consecutive port pairs, a connector
registered with each, a worker that dies started again, SIGTERM passed on to all."""
from __future__ import annotations

import signal
import socket
import sys
from typing import Any

import psutil
import requests
from support import LOOPBACK, wait_for

from .test_cli import RUN_CONNECTOR, RUN_ROUTER, running


def consecutive_free_ports(count: int, avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A port p with p .. p+count-1 all free on the loopback address now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            base = probe.getsockname()[1]
        if base + count > 65535 or avoid & set(range(base, base + count)):
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((LOOPBACK, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports found")


def ok(port: int) -> bool:
    try:
        with requests.Session() as s:
            s.trust_env = False
            return s.get(f"http://{LOOPBACK}:{port}/svc/bytes/10", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_workers_on_consecutive_ports_with_a_connector_at_each(target: Any) -> None:
    http = consecutive_free_ports(2)
    registration = consecutive_free_ports(2, {http, http + 1})
    args = [sys.executable, RUN_ROUTER, "--workers", "2", "--host", LOOPBACK,
            "--http-port", str(http), "--registration-port", str(registration),
            "--log-level", "WARNING"]
    with running(args) as supervisor:
        assert supervisor.expect("router workers:") == "2"
        ports = {int(supervisor.expect("router http port:")) for _ in range(2)}
        assert ports == {http, http + 1}
        connector = [sys.executable, RUN_CONNECTOR, "--route", "svc", "--target", target.url,
                     "--router", f"ws://{LOOPBACK}:{registration}",
                     "--router", f"ws://{LOOPBACK}:{registration + 1}", "--log-level", "WARNING"]
        with running(connector) as conn:
            wait_for(lambda: ok(http) and ok(http + 1), timeout=30,
                     what="both workers serving the connector's route")
            workers = psutil.Process(supervisor.popen.pid).children()
            assert len(workers) == 2
            workers[0].kill()  # a worker dies: the supervisor starts it again
            wait_for(lambda: len([p for p in psutil.Process(supervisor.popen.pid).children()
                                  if p.pid != workers[0].pid]) == 2, timeout=30,
                     what="the dead worker replaced")
            wait_for(lambda: ok(http) and ok(http + 1), timeout=30,
                     what="both workers serving again")
            assert conn.stop() == 0
        assert supervisor.stop(signal.SIGTERM, timeout=60) == 0
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                   for p in workers[1:])


def test_workers_must_be_at_least_one() -> None:
    from .test_cli import run

    done = run([sys.executable, RUN_ROUTER, "--workers", "0"])
    assert done.returncode == 2
    assert done.stderr.strip().endswith("workers: must be at least 1, got 0")
    assert "Traceback" not in done.stderr
