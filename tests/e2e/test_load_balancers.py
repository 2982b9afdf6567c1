"""Routers behind a real load balancer (Debian's nginx and HAProxy, started by the test on
loopback ports with the configs of examples/deploy/), restarted one after another (SIGTERM,
then started again) under a bounded, continuous load of GETs and POSTs: no idempotent request
fails, and the connectors register again at each restarted router.

The figures (requests sent, failed, p99, time to register again) are printed: run with ``-s``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import LOOPBACK, closed_port, deterministic_bytes, wait_for

from crank_sync import Connector

ROOT = Path(__file__).resolve().parents[2]
RUN_ROUTER = str(ROOT / "scripts" / "run_router.py")
DEPLOY = ROOT / "examples" / "deploy"
ROUTERS = 3


def binary(name: str) -> str:
    """The load balancer's program: .ci/run installs the Debian packages; without them the
    test fails (it is never skipped)."""
    found = shutil.which(name) or shutil.which(f"/usr/sbin/{name}")
    assert found, f"{name} is not installed: apt-get install nginx-light haproxy"
    return found


class RouterProcess:
    """run_router.py on fixed ports, stopped with SIGTERM and started again on the same."""

    def __init__(self) -> None:
        self.http, self.registration = closed_port(), closed_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, RUN_ROUTER, "--host", LOOPBACK, "--http-port", str(self.http),
             "--registration-port", str(self.registration), "--health-path", "/crank-health",
             "--drain-grace", "1", "--startup-grace", "10", "--drain-timeout", "10",
             "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once it listens
        assert line.startswith("router http port:"), line

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def sockets(self) -> int:
        try:
            with requests.Session() as s:
                s.trust_env = False
                health = s.get(f"http://{LOOPBACK}:{self.registration}/health", timeout=5)
            return int(health.json()["sockets"])
        except (requests.RequestException, ValueError, KeyError):
            return 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def config_from(template: str, routers: list[RouterProcess], port: int, workdir: Path) -> str:
    """An examples/deploy config with the test's ports and directories filled in."""
    text = (DEPLOY / template).read_text()
    servers = "\n".join(
        (f"        server 127.0.0.1:{r.http} max_fails=1 fail_timeout=2s;"
         if template.startswith("nginx")
         else f"    server r{i} 127.0.0.1:{r.http} check inter 200ms fall 1 rise 1")
        for i, r in enumerate(routers))
    head, _, rest = text.partition("# routers begin\n")
    _, _, tail = rest.partition("# routers end\n")
    text = (head.rstrip(" ") + servers + "\n" + tail).replace("LISTEN_PORT", str(port))
    text = text.replace("/var/lib/crank-lb", str(workdir))
    if template.startswith("nginx") and os.geteuid() == 0:
        text = "user root;\n" + text  # the workers write temp files in the test's directory
    return text


class LoadBalancer:
    def __init__(self, kind: str, routers: list[RouterProcess], workdir: Path) -> None:
        self.port = closed_port()
        conf = workdir / f"{kind}.conf"
        if kind == "nginx":
            conf.write_text(config_from("nginx-crank.conf", routers, self.port, workdir))
            args = [binary("nginx"), "-c", str(conf), "-p", str(workdir), "-g", "daemon off;"]
        else:
            conf.write_text(config_from("haproxy-crank.cfg", routers, self.port, workdir))
            args = [binary("haproxy"), "-f", str(conf), "-db"]
        self.log = open(workdir / f"{kind}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        wait_for(self._listening, what=f"{kind} listening")

    def _listening(self) -> bool:
        assert self.proc.poll() is None, "the load balancer exited: see its log"
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class Load:
    """A bounded loop of GETs (and a POST every fifth request) through the load balancer."""

    def __init__(self, port: int, limit: int = 20000) -> None:
        self.url = f"http://{LOOPBACK}:{port}"
        self.limit = limit
        self.stop = threading.Event()
        self.results: list[tuple[str, int | str, float]] = []
        self.thread = threading.Thread(target=self._run, name="test-lb-load")

    def _run(self) -> None:
        body = deterministic_bytes(20_000, 9)
        with requests.Session() as s:
            s.trust_env = False
            for i in range(self.limit):
                if self.stop.is_set():
                    return
                post = i % 5 == 4
                began = time.monotonic()
                try:
                    if post:
                        resp = s.post(f"{self.url}/svc/echo", data=body, timeout=30)
                        good = resp.status_code == 200 and resp.content == body
                    else:
                        resp = s.get(f"{self.url}/svc/bytes/2000?seed={i % 50}", timeout=30)
                        good = (resp.status_code == 200 and
                                resp.content == deterministic_bytes(2000, i % 50))
                    outcome: int | str = resp.status_code if good or resp.status_code != 200 \
                        else "bad body"
                except requests.RequestException as err:
                    outcome = type(err).__name__
                self.results.append(("POST" if post else "GET", outcome,
                                     time.monotonic() - began))

    def failed(self, method: str) -> list[Any]:
        return [r for r in self.results if r[0] == method and r[1] != 200]

    def p99_ms(self) -> float:
        times = sorted(r[2] for r in self.results)
        return 1000 * times[int(0.99 * (len(times) - 1))] if times else 0.0


@pytest.fixture
def routers() -> Iterator[list[RouterProcess]]:
    started = [RouterProcess() for _ in range(ROUTERS)]
    try:
        for router in started:
            router.start()
        yield started
    finally:
        for router in started:
            router.kill()


@pytest.fixture
def connectors(routers: list[RouterProcess], target: Any) -> Iterator[list[Connector]]:
    urls = [f"ws://{LOOPBACK}:{r.registration}" for r in routers]
    conns = [Connector(target=target.url, route="svc", routers=urls, sliding_window=2,
                       protocols=protocols).start() for protocols in (("3.0",), ("1.0",))]
    try:
        wait_for(lambda: all(r.sockets() >= 3 for r in routers), timeout=30,
                 what="both connectors registered at every router")
        yield conns
    finally:
        assert all([c.stop(timeout=10) for c in conns])


def report(kind: str, what: str, load: Load, extra: str = "") -> None:
    print(f"\n[{kind}] {what}: {len(load.results)} requests, "
          f"{len(load.failed('GET'))} GETs failed, {len(load.failed('POST'))} POSTs failed, "
          f"p99 {load.p99_ms():.1f} ms{extra}", flush=True)


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
@pytest.mark.timeout(240)
def test_routers_restarted_in_turn_lose_no_request(kind: str, routers: list[RouterProcess],
                                                   connectors: list[Connector],
                                                   tmp_path: Path) -> None:
    balancer = LoadBalancer(kind, routers, tmp_path)
    load = Load(balancer.port)
    back: list[float] = []
    try:
        load.thread.start()
        wait_for(lambda: len(load.results) >= 50, timeout=30, what="load going")
        for router in routers:
            seen = len(load.results)
            assert router.stop() == 0  # drained cleanly
            began = time.monotonic()
            router.start()
            wait_for(lambda r=router: r.sockets() >= 3, timeout=30,
                     what="the connectors registered at the restarted router")
            back.append(time.monotonic() - began)
            wait_for(lambda s=seen: len(load.results) >= s + 50, timeout=30,
                     what="requests served after the restart")
    finally:
        load.stop.set()
        load.thread.join(60)
        balancer.stop()
    report(kind, f"{ROUTERS} routers restarted in turn", load,
           f", registered again after {statistics.median(back):.2f} s median, "
           f"{max(back):.2f} s max")
    assert load.failed("GET") == [], load.failed("GET")[:5]
    assert len(load.results) > 200


@pytest.mark.timeout(240)
def test_connectors_restarted_in_turn_lose_no_request(routers: list[RouterProcess],
                                                      connectors: list[Connector],
                                                      target: Any, tmp_path: Path) -> None:
    balancer = LoadBalancer("nginx", routers, tmp_path)
    load = Load(balancer.port)
    urls = [f"ws://{LOOPBACK}:{r.registration}" for r in routers]
    try:
        load.thread.start()
        wait_for(lambda: len(load.results) >= 50, timeout=30, what="load going")
        for i, conn in enumerate(list(connectors)):
            seen = len(load.results)
            assert conn.stop(timeout=10)
            connectors[i] = Connector(target=target.url, route="svc", routers=urls,
                                      sliding_window=2, protocols=conn.config.protocols).start()
            wait_for(lambda: all(r.sockets() >= 3 for r in routers), timeout=30,
                     what="the restarted connector registered everywhere")
            wait_for(lambda s=seen: len(load.results) >= s + 50, timeout=30,
                     what="requests served after the restart")
    finally:
        load.stop.set()
        load.thread.join(60)
        balancer.stop()
    report("nginx", "2 connectors restarted in turn", load)
    assert load.failed("GET") == [], load.failed("GET")[:5]
