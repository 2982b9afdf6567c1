"""Fault tests with real processes: the router and connectors run as ``scripts/run_router.py``
and ``scripts/run_connector.py`` subprocesses on 127.0.0.1 (so SIGKILL is a real SIGKILL), and
their threads and open descriptors are counted with psutil before and after each fault.

Counting rule: take a baseline after warm-up traffic of the same kind as the fault (so pools,
cached worker threads and keep-alive connections exist already), inflict the fault several
times, then wait (with a deadline) until each process is back to at most baseline plus a small
constant. A leak of one thread or descriptor per fault then shows however busy the machine is.

``tests/faults/conftest.py`` has the ``procs`` fixture that owns what :class:`Procs` starts.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from .sockets import LOOPBACK
from .waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]  # the checkout
SCRIPTS = ROOT / "scripts"
#: Threads and descriptors a process may hold above its baseline once a fault is over: a
#: parked worker thread, a pooled keep-alive connection. Every fault is repeated so that a
#: leak per fault exceeds this.
THREAD_SLACK = 2
FD_SLACK = 3
V1, V3 = "1.0", "3.0"
protocols = pytest.mark.parametrize("protocol", [V1, V3], ids=["v1", "v3"])


@dataclass(frozen=True)
class Usage:
    threads: int
    fds: int
    rss: int

    def __str__(self) -> str:
        return f"{self.threads} threads, {self.fds} fds, {self.rss >> 20} MiB"


class Proc:
    """One script in a subprocess: stdout lines queued by a reader thread, stderr to a file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # closed in close()
        self.popen = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=self._log, text=True,
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.ps = psutil.Process(self.popen.pid)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"test-stdout-{name}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))

    def line(self, prefix: str, timeout: float = 20.0) -> str:
        """The rest of the first stdout line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line[len(prefix):]
        raise AssertionError(f"{self.name} printed no {prefix!r} line; its log:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def usage(self) -> Usage:
        return Usage(self.ps.num_threads(), self.ps.num_fds(), self.ps.memory_info().rss)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, and reap."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM; the exit status (the process must exit within ``timeout``)."""
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._reader.join(10)
        self._log.close()


class RouterProc(Proc):
    def __init__(self, name: str, log_dir: Path, args: list[str]) -> None:
        super().__init__(name, [str(SCRIPTS / "run_router.py"), *args], log_dir)
        self.http_port = int(self.line("router http port: "))
        self.registration_port = int(self.line("router registration port: "))
        self.url = f"http://{LOOPBACK}:{self.http_port}"
        self.ws_url = f"ws://{LOOPBACK}:{self.registration_port}"

    def services(self) -> dict[str, Any]:
        with requests.Session() as s:
            s.trust_env = False
            resp = s.get(f"http://{LOOPBACK}:{self.registration_port}/health/connectors",
                         timeout=10)
            return resp.json()["services"]  # type: ignore[no-any-return]

    def sockets(self, route: str, instance: str | None = None) -> int:
        """Connector sockets registered for ``route`` (of one connector ``instance``)."""
        service = self.services().get(route) or {"connectors": []}
        return sum(len(c["connections"]) for c in service["connectors"]
                   if instance is None or c["connectorInstanceID"] == instance)


    def quiet(self, route: str, window: int) -> bool:
        """No request in flight on ``route``, and at least ``window`` sockets registered."""
        service = self.services().get(route) or {"connectors": []}
        connections = [s for c in service["connectors"] for s in c["connections"]]
        return len(connections) >= window and all(s["inflight"] == 0 for s in connections)


class ConnectorProc(Proc):
    def __init__(self, name: str, log_dir: Path, router: RouterProc | str, target: str,
                 route: str, protocol: str, args: list[str]) -> None:
        router_url = router if isinstance(router, str) else router.ws_url
        argv = [str(SCRIPTS / "run_connector.py"), "--router", router_url, "--route", route,
                "--target", target, "--protocol", protocol, "--window", "2",
                "--ping-interval", "5", *args]
        super().__init__(name, argv, log_dir)
        self.instance = self.line("connector ").split(" ", 1)[0]
        self.route = route
        self.protocol = protocol
        #: sockets it keeps at each router: the sliding window (v1) or one v3 socket
        self.window = 2 if protocol == V1 else 1

    def registered(self, router: RouterProc, timeout: float = 20.0) -> None:
        wait_for(lambda: router.sockets(self.route, self.instance) >= self.window,
                 timeout=timeout, what=f"{self.name} registered at the router")

    def quiet(self, router: RouterProc, timeout: float = 20.0) -> None:
        """Wait until the router has no request of this route in flight and the full window
        (so one fault is over before the next: worker threads are parked, then reused)."""
        wait_for(lambda: router.quiet(self.route, self.window), timeout=timeout,
                 what=f"no request in flight on {self.route!r}")


class TargetProc(Proc):
    """``scripts/bench_target.py``: /bytes/N, POST /echo, /slow?s=S."""

    def __init__(self, name: str, log_dir: Path, port: int = 0) -> None:
        super().__init__(name, [str(SCRIPTS / "bench_target.py"), "--port", str(port)], log_dir)
        self.port = int(self.line("target port: "))
        self.url = f"http://{LOOPBACK}:{self.port}"


#: the router's settings in these tests: short timeouts so that faults resolve quickly
ROUTER_ARGS = ["--host", LOOPBACK, "--http-port", "0", "--registration-port", "0",
               "--idle-timeout", "3", "--header-timeout", "2", "--client-timeout", "30",
               "--connector-max-wait", "3", "--ping-interval", "5", "--drain-timeout", "5",
               "--log-level", "INFO"]


class Procs:
    """Starts processes for one test and kills whatever is left at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []
        self._names: dict[str, int] = {}

    def _name(self, kind: str) -> str:
        self._names[kind] = self._names.get(kind, 0) + 1
        return f"{kind}{self._names[kind]}"

    def router(self, *extra: str, ports: tuple[int, int] | None = None) -> RouterProc:
        args = list(ROUTER_ARGS) + list(extra)
        if ports is not None:
            args += ["--http-port", str(ports[0]), "--registration-port", str(ports[1])]
        proc = RouterProc(self._name("router"), self.log_dir, args)
        self.started.append(proc)
        return proc

    def connector(self, router: RouterProc, target: Any, protocol: str, route: str = "svc",
                  *extra: str, wait: bool = True) -> ConnectorProc:
        url = target if isinstance(target, str) else target.url
        proc = ConnectorProc(self._name("connector"), self.log_dir, router, url, route,
                             protocol, list(extra))
        self.started.append(proc)
        if wait:
            proc.registered(router)
        return proc

    def target(self, port: int = 0) -> TargetProc:
        proc = TargetProc(self._name("target"), self.log_dir, port)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.started):
            proc.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()}" for p in self.started)


# --------------------------------------------------------------------------- counting


def settled(proc: Proc, baseline: Usage, what: str, timeout: float = 30.0,
            threads: int = THREAD_SLACK, fds: int = FD_SLACK) -> Usage:
    """Wait until ``proc`` is back to at most ``baseline`` + the slack; its usage then."""
    last: list[Usage] = []

    def back() -> bool:
        last[:] = [proc.usage()]
        return last[0].threads <= baseline.threads + threads and last[0].fds <= baseline.fds + fds

    try:
        wait_for(back, timeout=timeout, what=f"{proc.name} back to its baseline after {what}")
    except AssertionError as err:
        raise AssertionError(f"{err}: baseline {baseline}, now {last[0]}") from None
    return last[0]


class Peak:
    """Samples a process's usage on a thread until stopped: the most seen meanwhile."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.threads = 0
        self.fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"test-peak-{proc.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                usage = self.proc.usage()
            except psutil.Error:
                return
            self.threads = max(self.threads, usage.threads)
            self.fds = max(self.fds, usage.fds)

    def stop(self) -> Peak:
        self._stop.set()
        self._thread.join(5)
        return self


# --------------------------------------------------------------------------- clients


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def get(url: str, timeout: float = 20.0) -> requests.Response:
    with session() as s:
        return s.get(url, timeout=timeout)


def serves(router: RouterProc, route: str = "svc", times: int = 3) -> None:
    """``times`` GETs through ``router`` to a bench or test target answer 200, whole."""
    with session() as s:
        for i in range(times):
            resp = s.get(f"{router.url}/{route}/bytes/{1000 + i}", timeout=20)
            assert resp.status_code == 200, (resp.status_code, resp.text[:300])
            assert len(resp.content) == 1000 + i


def raw_request(port: int, head: bytes, timeout: float = 20.0) -> socket.socket:
    """A client socket that has sent ``head``; the caller closes it."""
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    sock.sendall(head)
    return sock


def in_thread(fn: Callable[[], Any], name: str) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` on a named thread; the dict gets ``result`` or ``error``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as err:  # noqa: BLE001 - reported by the test
            out["error"] = err

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, out
