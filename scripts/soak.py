#!/usr/bin/env python3
"""A bounded soak: a router, connectors and a target as processes on 127.0.0.1, under mixed load.

    python scripts/soak.py [--minutes 10] [--clients 6] [--png soak.png] [--json soak.json]

Starts ``scripts/bench_target.py``, ``scripts/run_router.py`` and one connector per protocol in
``--protocols`` (default a v3 and a v1 connector on the same route), then runs ``--clients``
worker threads that loop over GETs of varied sizes, POST echoes, downloads aborted midway and
slow readers, while the connectors are restarted one at a time (SIGTERM, then a new process)
every ``--restart-minutes``. Every ``--sample-seconds`` it prints one line: RSS, threads and
open descriptors of the router and of each connector (psutil), the requests that succeeded or
failed in the interval, and the WARNING/ERROR lines each process logged meanwhile. At the end
it writes the samples as JSON and, when matplotlib is installed (``pip install
'crank_sync[soak]'``), draws them to a PNG. Flat lines are the goal.

Everything stops at the end (or on Ctrl-C): the load threads are joined and every process is
terminated.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ROUTE = "soak"
PATTERN = bytes(range(256)) * 4096  # what bench_target's /bytes/N sends, 1 MiB of it


# --------------------------------------------------------------------------- processes


class Proc:
    """A script of this repository in a subprocess; stderr (its log) goes to a file."""

    def __init__(self, name: str, script: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / script), *args], stdout=subprocess.PIPE,
            stderr=self._log, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.ps = psutil.Process(self.popen.pid)

    def read_line(self, prefix: str, timeout: float = 30.0) -> str:
        """The rest of the first stdout line starting with ``prefix``."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise RuntimeError(f"{self.name} did not print {prefix!r}; see {self.log_path}")

    def usage(self) -> dict[str, float]:
        try:
            return {"rss_mib": self.ps.memory_info().rss / 2**20,
                    "threads": self.ps.num_threads(), "fds": self.ps.num_fds()}
        except psutil.Error:
            return {"rss_mib": float("nan"), "threads": float("nan"), "fds": float("nan")}

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()
        return self.popen.returncode


class LogCounter:
    """WARNING and ERROR lines a process added to its log since the last call."""

    def __init__(self) -> None:
        self._offsets: dict[Path, int] = {}

    def new_problems(self, path: Path) -> int:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return 0
        self._offsets[path] = offset + len(data)
        return sum(1 for line in data.splitlines()
                   if b" WARNING " in line or b" ERROR " in line or b"Traceback" in line)


# --------------------------------------------------------------------------- load


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def add(self, kind: str, error: str | None = None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if error is not None:
                self.counts["errors"] += 1
                if len(self.errors) < 50:
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {kind}: {error}")

    def take(self) -> Counter[str]:
        with self.lock:
            counts, self.counts = self.counts, Counter()
            return counts


def _expect_pattern(body: bytes, size: int) -> str | None:
    if len(body) != size:
        return f"{len(body)} bytes instead of {size}"
    if size <= len(PATTERN) and body != PATTERN[:size]:
        return "body differs from the target's"
    return None


class Load:
    """``clients`` threads looping over a weighted mix of exchanges until stopped."""

    MIX = (("get", 50), ("post", 25), ("abort", 10), ("slow", 15))

    def __init__(self, port: int, clients: int, tally: Tally, seed: int = 1) -> None:
        self.port = port
        self.tally = tally
        self.stop_event = threading.Event()
        kinds, weights = zip(*self.MIX, strict=True)
        self._kinds, self._weights = list(kinds), list(weights)
        self.threads = [threading.Thread(target=self._run, args=(random.Random(seed + i),),
                                         name=f"soak-client-{i}", daemon=True)
                        for i in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(60)

    def _run(self, rng: random.Random) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set():
            kind = rng.choices(self._kinds, self._weights)[0]
            if conn is None:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                error = getattr(self, f"_{kind}")(conn, rng)
            except (OSError, http.client.HTTPException) as err:
                error = f"{type(err).__name__}: {err}"
            if error is not None or kind in ("abort", "slow"):
                conn.close()  # a fresh connection after an abort, a slow read or an error
                conn = None
            self.tally.add(kind, error)
        if conn is not None:
            conn.close()

    def _get(self, conn: http.client.HTTPConnection, rng: random.Random) -> str | None:
        size = rng.choice((0, 100, 4096, 65_536, 300_000, 1_000_000))
        conn.request("GET", f"/{ROUTE}/bytes/{size}")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return f"GET status {resp.status}: {body[:100]!r}"
        return _expect_pattern(body, size)

    def _post(self, conn: http.client.HTTPConnection, rng: random.Random) -> str | None:
        body = rng.randbytes(rng.choice((10, 4096, 100_000, 600_000)))
        conn.request("POST", f"/{ROUTE}/echo", body=body,
                     headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        echoed = resp.read()
        if resp.status != 200:
            return f"POST status {resp.status}: {echoed[:100]!r}"
        return None if echoed == body else f"echo of {len(body)} bytes came back different"

    def _abort(self, conn: http.client.HTTPConnection, rng: random.Random) -> str | None:
        """A large download the client gives up on after a little (counted, not an error)."""
        conn.request("GET", f"/{ROUTE}/bytes/{50_000_000}")
        resp = conn.getresponse()
        if resp.status != 200:
            return f"abort status {resp.status}"
        resp.read(rng.choice((1, 65_536, 1_000_000)))
        resp.close()
        return None

    def _slow(self, conn: http.client.HTTPConnection, rng: random.Random) -> str | None:
        """A download read in small pieces with pauses, about a second in all."""
        size = 2_000_000
        conn.request("GET", f"/{ROUTE}/bytes/{size}")
        resp = conn.getresponse()
        if resp.status != 200:
            return f"slow status {resp.status}"
        got = 0
        while chunk := resp.read(32 * 1024):
            got += len(chunk)
            self.stop_event.wait(0.015)
        return None if got == size else f"slow reader got {got} of {size} bytes"


# --------------------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.target: Proc | None = None
        self.router: Proc | None = None
        self.connectors: dict[str, Proc] = {}
        self.generation: Counter[str] = Counter()
        self.restarts: list[float] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def start(self) -> None:
        self.target = Proc("target", "bench_target.py", ["--port", "0"], self.log_dir)
        target_port = int(self.target.read_line("target port: "))
        self.router = Proc("router", "run_router.py", [
            "--host", HOST, "--http-port", "0", "--registration-port", "0",
            "--log-level", "WARNING"], self.log_dir)
        self.http_port = int(self.router.read_line("router http port: "))
        self.registration_port = int(self.router.read_line("router registration port: "))
        self.target_url = f"http://{HOST}:{target_port}"
        for protocol in self.args.protocols:
            self.connectors[protocol] = self._connector(protocol)

    def _connector(self, protocol: str) -> Proc:
        self.generation[protocol] += 1
        proc = Proc(f"connector-v{protocol[0]}-{self.generation[protocol]}", "run_connector.py", [
            "--router", f"ws://{HOST}:{self.registration_port}", "--route", ROUTE,
            "--target", self.target_url, "--protocol", protocol, "--log-level", "WARNING"],
            self.log_dir)
        instance = proc.read_line("connector ").split(" ", 1)[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._registered(instance):
            time.sleep(0.1)
        return proc

    def _registered(self, instance: str) -> bool:
        conn = http.client.HTTPConnection(HOST, self.registration_port, timeout=10)
        try:
            conn.request("GET", "/health/connectors")
            services = json.loads(conn.getresponse().read())["services"]
        except (OSError, ValueError, KeyError):
            return False
        finally:
            conn.close()
        connectors = (services.get(ROUTE) or {}).get("connectors", [])
        return any(c["connectorInstanceID"] == instance and c["connections"] for c in connectors)

    def restart_loop(self, stop: threading.Event) -> None:
        """Restart the connectors one at a time, every ``--restart-minutes``."""
        turn = 0
        protocols = list(self.connectors)
        while not stop.wait(self.args.restart_minutes * 60):
            protocol = protocols[turn % len(protocols)]
            turn += 1
            with self.lock:
                old = self.connectors[protocol]
            old.stop()
            new = self._connector(protocol)
            with self.lock:
                self.connectors[protocol] = new
                self.restarts.append((time.monotonic() - self.started) / 60)

    def sample(self, tally: Tally, logs: LogCounter) -> dict[str, Any]:
        assert self.router is not None
        counts = tally.take()
        with self.lock:
            procs = {"router": self.router,
                     **{f"connector-v{p[0]}": c for p, c in self.connectors.items()}}
            log_paths = {"router": [self.router.log_path]}
            for p in self.connectors:
                log_paths[f"connector-v{p[0]}"] = sorted(self.log_dir.glob(f"connector-v{p[0]}-*"))
        row: dict[str, Any] = {"minute": round((time.monotonic() - self.started) / 60, 3),
                               "requests": sum(counts[k] for k, _ in Load.MIX),
                               "errors": counts["errors"],
                               "by_kind": {k: counts[k] for k, _ in Load.MIX}}
        for name, proc in procs.items():
            row[name] = {**proc.usage(),
                         "log_problems": sum(logs.new_problems(p) for p in log_paths[name])}
        return row

    def stop(self) -> None:
        with self.lock:
            procs = [*self.connectors.values(), self.router, self.target]
        for proc in procs:
            if proc is not None:
                proc.stop()


def format_row(row: dict[str, Any]) -> str:
    parts = [f"t={row['minute']:6.2f}min"]
    for name in [k for k in row if k == "router" or k.startswith("connector")]:
        u = row[name]
        parts.append(f"{name} rss={u['rss_mib']:.1f}MiB thr={u['threads']} fds={u['fds']} "
                     f"logged={u['log_problems']}")
    parts.append(f"requests={row['requests']} errors={row['errors']}")
    return " | ".join(parts)


def draw(path: Path, samples: list[dict[str, Any]], restarts: list[float], title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib is not installed (pip install 'crank_sync[soak]'): no PNG",
              file=sys.stderr)
        return False
    names = [k for k in samples[0] if k == "router" or k.startswith("connector")]
    minutes = [s["minute"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(7, 8), sharex=True)
    for ax, key, label in zip(axes, ("rss_mib", "threads", "fds"),
                              ("RSS (MiB)", "threads", "open descriptors"), strict=False):
        for name in names:
            ax.plot(minutes, [s[name][key] for s in samples], marker=".", label=name)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", loc="lower right")
    axes[3].plot(minutes, [s["requests"] for s in samples], marker=".", label="requests")
    axes[3].plot(minutes, [s["errors"] for s in samples], marker=".", color="red", label="errors")
    axes[3].set_ylabel("per sample")
    axes[3].set_ylim(bottom=0)
    axes[3].grid(alpha=0.3)
    axes[3].legend(fontsize="small", loc="lower right")
    axes[3].set_xlabel("minutes (dashed: a connector restarted)")
    for ax in axes:
        for minute in restarts:
            ax.axvline(minute, color="grey", linestyle="--", linewidth=0.8)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Bounded soak of a router and connectors.")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long the load runs (default 10; 0.5 for a smoke run)")
    parser.add_argument("--sample-seconds", type=float, default=None,
                        help="seconds between samples (default 60, or less for short runs)")
    parser.add_argument("--clients", type=int, default=6, help="load threads (default 6)")
    parser.add_argument("--restart-minutes", type=float, default=2.0,
                        help="restart one connector this often (default 2)")
    parser.add_argument("--protocols", default="3.0,1.0",
                        help="one connector per protocol, on one route (default 3.0,1.0)")
    parser.add_argument("--png", type=Path, help="draw the samples to this PNG")
    parser.add_argument("--json", type=Path, help="write the samples to this JSON file")
    parser.add_argument("--log-dir", type=Path,
                        help="keep the processes' logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    if args.restart_minutes <= 0:
        parser.error("--restart-minutes must be positive")
    args.protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not args.protocols or any(p not in ("1.0", "3.0") for p in args.protocols):
        parser.error("--protocols must list 1.0 and/or 3.0")
    if args.sample_seconds is None:
        args.sample_seconds = min(60.0, args.minutes * 60 / 5)
    if args.sample_seconds <= 0:
        parser.error("--sample-seconds must be positive")
    for option, path in (("--png", args.png), ("--json", args.json)):
        if path is not None and not path.parent.is_dir():
            parser.error(f"{option}: directory {path.parent} does not exist")
    if args.log_dir is not None and not args.log_dir.is_dir():
        parser.error(f"--log-dir: {args.log_dir} is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="crank-soak-") as tmp:
        log_dir = args.log_dir or Path(tmp)
        soak = Soak(args, log_dir)
        tally, logs = Tally(), LogCounter()
        samples: list[dict[str, Any]] = []
        load = restarter = None
        try:
            soak.start()
            print(f"soak: {args.minutes:g} min, {args.clients} clients, connectors "
                  f"{', '.join(args.protocols)}, router http port {soak.http_port}", flush=True)
            load = Load(soak.http_port, args.clients, tally)
            load.start()
            restarter = threading.Thread(target=soak.restart_loop, args=(stop,),
                                         name="soak-restarter", daemon=True)
            restarter.start()
            end = soak.started + args.minutes * 60
            next_sample = time.monotonic() + args.sample_seconds
            while not stop.is_set() and time.monotonic() < end - 0.5:
                stop.wait(max(0.0, min(next_sample, end) - time.monotonic()))
                if time.monotonic() >= next_sample or time.monotonic() >= end - 0.5:
                    samples.append(soak.sample(tally, logs))
                    print(format_row(samples[-1]), flush=True)
                    next_sample += args.sample_seconds
        finally:
            stop.set()
            if load is not None:
                load.stop()
            if restarter is not None:
                restarter.join(60)
            soak.stop()
        totals = {"requests": sum(s["requests"] for s in samples),
                  "errors": sum(s["errors"] for s in samples),
                  "connector_restarts": len(soak.restarts)}
        print(f"soak: {totals['requests']} requests, {totals['errors']} errors, "
              f"{totals['connector_restarts']} connector restarts", flush=True)
        for line in tally.errors[:10]:
            print(f"  error: {line}")
        if args.json is not None:
            args.json.write_text(json.dumps({
                "settings": {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in vars(args).items()},
                "samples": samples, "restarts_at_minute": soak.restarts, "totals": totals,
                "errors": tally.errors}, indent=1))
        if args.png is not None and samples:
            title = (f"crank_sync soak: {args.minutes:g} min, {args.clients} clients, "
                     f"{totals['requests']} requests, {totals['errors']} errors")
            if draw(args.png, samples, soak.restarts, title):
                print(f"soak: wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
