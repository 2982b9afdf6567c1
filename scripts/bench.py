#!/usr/bin/env python3
"""Benchmark crank_sync: python scripts/bench.py [--quick] [--json] [--protocols 1.0,3.0]

Starts, as separate processes on 127.0.0.1, a stdlib target service (scripts/bench_target.py),
a crank_sync router and one crank_sync connector per protocol (one at a time), then measures
direct to the target and through the tunnel in the same run:

1. small GETs (1 KiB body): requests/s, p50/p99 latency at concurrency 1 and 16, per protocol,
   and through a plain one-process reverse proxy (scripts/plain_proxy.py, ``small_ceiling``):
   ThreadingHTTPServer and urllib3, the tunnel's parts without the tunnel; then the same
   small GETs beside a slow neighbour (``slow_neighbour``): one client reading a 200 MB
   download at 200 KB/s on the same route (with v3, over the same connector socket);
2. a 100 MiB download and a 32 MiB upload: seconds and MB/s (1 MB = 1e6 bytes), the median
   of three runs, for every protocol (``bulk_by_protocol``), and through two bare TCP relay
   processes in a chain (scripts/tcp_relay.py, ``bulk_ceiling``): the least any two-process
   Python tunnel costs;
3. peak RSS of the router and the connector during a 1 GiB download (quick: 256 MiB);
4. 500 concurrent requests held 2 s each (quick: 100): successes, router threads and RSS peak;
5. the cost of parsing a request head;
6. the peers (scripts/bench_peers.py, processes of its own): crank_sync beside asgi-cc,
   crank4py-connector, crank4go (``--crank4go-connector PATH``), gunicorn direct and the plain
   proxy, serving the same application; ``--section peers`` runs only this table.

The small-request load comes from ``wrk`` when it is on PATH, otherwise from a built-in
multi-threaded client; the same generator is used for direct and tunnel in one run.
Sections 2 (the main table), 3 and 4 use the first protocol in --protocols whose connector
starts. A protocol whose
connector cannot start (e.g. 3.0 before it exists) is reported with null values and an
"error" note. Prints a table; with --json also one JSON object as the last stdout line.
This is a benchmark, not a test: it exits 0 unless it cannot run at all.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from crank_sync.ws import masking  # noqa: E402 - runs from a checkout without installing

HOST = "127.0.0.1"
SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROUTE = "bench"
SMALL_SIZE = 1024
SMALL_PATH = f"/{ROUTE}/bytes/{SMALL_SIZE}"
CONCURRENCIES = (1, 16)
DOWNLOAD_SIZE = 100 * 1024 * 1024
UPLOAD_SIZE = 32 * 1024 * 1024
#: Each bulk transfer runs this many times; the median is reported.
BULK_REPEATS = 3
RSS_SIZE_FULL = 1024 * 1024 * 1024
RSS_SIZE_QUICK = 256 * 1024 * 1024
SLOW_FULL = 500
SLOW_QUICK = 100
SLOW_SECONDS = 2.0
SLOW_TIMEOUT = 30.0
SAMPLE_INTERVAL = 0.05
STARTUP_DEADLINE = 15.0
READY_DEADLINE = 20.0
STOP_DEADLINE = 5.0
REQUEST_TIMEOUT = 10.0
BULK_TIMEOUT = 60.0
MB = 1e6
MIB = 1024 * 1024
#: The slow neighbour: a client reading a large download at about this rate (bytes/s)
#: while small GETs run on the same route (with v3, over the same connector socket).
SLOW_READER_RATE = 200 * 1000
SLOW_READER_SIZE = 200 * 1000 * 1000


class BenchError(Exception):
    """A measurement or a child process failed; the message goes into the report."""


# --------------------------------------------------------------------------- child processes


class Child:
    """A child process whose stdout is read line by line by a daemon thread."""

    def __init__(self, name: str, args: list[str], program: str | None = None) -> None:
        """Runs ``python args...``, or ``program args...`` when a program is given."""
        self.name = name
        self.args = args
        self.stderr_file = tempfile.TemporaryFile(mode="w+b")
        self.proc = subprocess.Popen(
            [program or sys.executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.stderr_file, cwd=os.path.dirname(SCRIPTS),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reported = False  # its failure is already in the results
        threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, deadline: float) -> re.Match[str]:
        """The first stdout line matching pattern, before the deadline (monotonic)."""
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.name}: no line matching {pattern!r} in time"
                                 f"{self.stderr_note()}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                try:
                    code = self.proc.wait(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    code = None
                raise BenchError(f"{self.name} exited with code {code}{self.stderr_note()}")
            match = regex.search(line)
            if match:
                return match

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, lines: int = 5) -> list[str]:
        try:
            self.stderr_file.seek(0)
            text = self.stderr_file.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def stderr_note(self) -> str:
        tail = self.stderr_tail(1)
        return f": {tail[-1].strip()}" if tail else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a deadline; always reaps the process."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_target(children: list[Child]) -> int:
    child = Child("target", [os.path.join(SCRIPTS, "bench_target.py"), "--port", "0"])
    children.append(child)
    match = child.wait_for(r"target port: (\d+)", time.monotonic() + STARTUP_DEADLINE)
    return int(match.group(1))


def start_relay(children: list[Child], to_port: int) -> tuple[Child, int]:
    child = Child("relay", [os.path.join(SCRIPTS, "tcp_relay.py"), "--to", str(to_port)])
    children.append(child)
    match = child.wait_for(r"relay port: (\d+)", time.monotonic() + STARTUP_DEADLINE)
    return child, int(match.group(1))


def relay_ceiling(children: list[Child], target_port: int, bulk: dict[str, dict[str, Any]],
                  bulk_ops: dict[str, Callable[[int], float]],
                  progress: Callable[[str], None]) -> dict[str, Any]:
    """Bulk transfers through two bare TCP relay processes in a chain: what copying the bytes
    through two Python processes costs at the least, with no websocket and no HTTP."""
    ceiling: dict[str, Any] = {}
    relays: list[Child] = []
    try:
        inner, inner_port = start_relay(children, target_port)
        relays.append(inner)
        outer, outer_port = start_relay(children, inner_port)
        relays.append(outer)
        for name, op in bulk_ops.items():
            progress(f"{name} through two bare TCP relays (the ceiling)")
            mb = mbps(bulk[name]["bytes"], op(outer_port))
            ceiling[name] = {"mbps": mb, "ratio": ratio(mb, bulk[name]["direct_mbps"])}
    except Exception as err:  # noqa: BLE001 - the ceiling is informative only
        ceiling["error"] = error_text(err)
    finally:
        for relay in relays:
            relay.stop()
    return ceiling


def small_ceiling(children: list[Child], target_port: int, direct: dict[int, Any],
                  load: Callable[[int, str, int, float], Load], duration: float, warmup: float,
                  progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Small GETs through a plain one-process reverse proxy built from the same parts as the
    tunnel (ThreadingHTTPServer and urllib3, scripts/plain_proxy.py): what those parts serve
    at the most, with no websocket, no second process and no thread hand-off. One row per
    concurrency, as in ``small_get``: a row that could not be measured has null figures and an
    "error"."""
    child = Child("plain-proxy", [os.path.join(SCRIPTS, "plain_proxy.py"),
                                  "--to", str(target_port)])
    children.append(child)
    rows: list[dict[str, Any]] = [{"concurrency": conc, "rps": None, "ratio": None,
                                   "p50_ms": None, "errors": None} for conc in CONCURRENCIES]
    try:
        port = int(child.wait_for(r"proxy port: (\d+)",
                                  time.monotonic() + STARTUP_DEADLINE).group(1))
        load(port, SMALL_PATH, max(CONCURRENCIES), warmup)
        for row in rows:
            conc = row["concurrency"]
            progress(f"small GETs through a plain reverse proxy (the ceiling), concurrency {conc}")
            got = load(port, SMALL_PATH, conc, duration)
            d = direct.get(conc)
            row.update(rps=round(got.rps, 1),
                       ratio=ratio(got.rps, d.rps if isinstance(d, Load) else None),
                       p50_ms=rnd(got.p50_ms, 3), errors=got.errors)
    except Exception as err:  # noqa: BLE001 - the ceiling is informative only
        for row in rows:
            if row["rps"] is None:
                row["error"] = error_text(err)
    finally:
        child.stop()
    return rows


def start_router(children: list[Child], extra: list[str] | None = None) -> tuple[Child, int, int]:
    child = Child("router", [
        os.path.join(SCRIPTS, "run_router.py"), "--host", HOST, "--http-port", "0",
        "--registration-port", "0", "--connector-max-wait", str(SLOW_TIMEOUT),
        "--log-level", "WARNING", *(extra or []),
    ])
    children.append(child)
    deadline = time.monotonic() + STARTUP_DEADLINE
    http_port = int(child.wait_for(r"router http port: (\d+)", deadline).group(1))
    reg_port = int(child.wait_for(r"router registration port: (\d+)", deadline).group(1))
    return child, http_port, reg_port


def start_connector(children: list[Child], protocol: str, reg_port: int, target_port: int,
                    router_port: int, window: int) -> Child:
    child = Child(f"connector {protocol}", [
        os.path.join(SCRIPTS, "run_connector.py"), "--router", f"ws://{HOST}:{reg_port}",
        "--route", ROUTE, "--target", f"http://{HOST}:{target_port}", "--window", str(window),
        "--protocol", protocol, "--stop-timeout", "2", "--log-level", "WARNING",
    ])
    children.append(child)
    deadline = time.monotonic() + READY_DEADLINE
    child.wait_for(r"connector .* serving route", deadline)
    # Sockets register in the background: wait until a request through the router works.
    await_route(child, router_port, deadline)
    return child


def await_route(child: Child, port: int, deadline: float) -> None:
    """Until a small GET through ``port`` works, while ``child`` (what serves it) lives."""
    last = "no attempt"
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(f"{child.name} exited with code {child.proc.returncode}"
                             f"{child.stderr_note()}")
        try:
            timeout = max(0.1, min(5.0, deadline - time.monotonic()))
            status, body = http_get(port, f"/{ROUTE}/bytes/16", timeout)
            if status == 200 and len(body) == 16:
                return
            last = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.1)
    raise BenchError(f"{child.name}: no successful request on port {port} within "
                     f"{READY_DEADLINE:.0f} s (last: {last})")


def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- /proc sampler


class Sampler:
    """Samples VmRSS and Threads of some pids every 50 ms; keeps the maxima."""

    def __init__(self, pids: dict[str, int], max_seconds: float) -> None:
        self.pids = pids
        self.max_seconds = max_seconds
        self.rss_kib: dict[str, int] = dict.fromkeys(pids, 0)
        self.threads: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._sample()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.wait(SAMPLE_INTERVAL) and time.monotonic() < deadline:
            self._sample()

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            self.rss_kib[name] = max(self.rss_kib[name], int(line.split()[1]))
                        elif line.startswith("Threads:"):
                            self.threads[name] = max(self.threads[name], int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass

    def rss_mib(self, name: str) -> float | None:
        kib = self.rss_kib.get(name, 0)
        return round(kib / 1024, 1) if kib else None


# --------------------------------------------------------------------------- load generators


@dataclass
class Load:
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    ok: int
    errors: int


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def builtin_load(port: int, path: str, concurrency: int, duration: float) -> Load:
    """Threads with one keep-alive HTTPConnection each, for a fixed duration."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    ends = [0.0] * concurrency
    go = threading.Event()
    start = [0.0]

    def worker(i: int) -> None:
        go.wait()
        deadline = start[0] + duration
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        lat = latencies[i]
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status == 200 and len(body) == SMALL_SIZE:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors[i] += 1
                    if resp.will_close:
                        conn.close()
                except (OSError, http.client.HTTPException):
                    errors[i] += 1
                    conn.close()
                    time.sleep(0.01)
        finally:
            conn.close()
            ends[i] = time.perf_counter()

    threads = [threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start[0] = time.perf_counter()
    go.set()
    join_deadline = time.monotonic() + duration + REQUEST_TIMEOUT + 5
    for thread in threads:
        thread.join(timeout=max(0.0, join_deadline - time.monotonic()))
    elapsed = max(max(ends) - start[0], 1e-9) if all(ends) else duration
    merged = sorted(x for lat in latencies for x in lat)
    p50, p99 = percentile(merged, 0.50), percentile(merged, 0.99)
    return Load(rps=len(merged) / elapsed,
                p50_ms=None if p50 is None else p50 * 1e3,
                p99_ms=None if p99 is None else p99 * 1e3,
                ok=len(merged), errors=sum(errors))


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _wrk_ms(text: str, label: str) -> float | None:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    return float(match.group(1)) * _WRK_UNITS[match.group(2)] if match else None


def wrk_load(port: int, path: str, concurrency: int, duration: float) -> Load:
    """wrk --latency, no Lua script; parses requests/s, percentiles and errors."""
    seconds = max(1, round(duration))
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    cmd = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s",
           "--timeout", f"{REQUEST_TIMEOUT:.0f}s", "--latency", f"http://{HOST}:{port}{path}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"wrk did not finish: {' '.join(cmd)}") from err
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode != 0 or not rps or not total:
        raise BenchError(f"wrk failed (code {done.returncode}): {(done.stderr or out).strip()}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    ok = max(0, int(total.group(1)) - (int(non2xx.group(1)) if non2xx else 0))
    return Load(rps=float(rps.group(1)), p50_ms=_wrk_ms(out, "50%"), p99_ms=_wrk_ms(out, "99%"),
                ok=ok, errors=errors)


# --------------------------------------------------------------------------- bulk / slow


def median_of(times: int, op: Callable[[], float]) -> float:
    """The median of ``times`` runs of ``op`` (seconds): a 100 MiB transfer on loopback takes
    tens of milliseconds, so one run mostly measures the scheduler."""
    return sorted(op() for _ in range(times))[times // 2]


def download(port: int, size: int, deadline_s: float = BULK_TIMEOUT) -> float:
    """GET size bytes and discard them; returns seconds. Raises on a short or bad response."""
    buf = bytearray(1024 * 1024)
    view = memoryview(buf)
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        t0 = time.perf_counter()
        deadline = time.monotonic() + deadline_s
        conn.request("GET", f"/{ROUTE}/bytes/{size}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"download: HTTP {resp.status}: {resp.read(200)!r}")
        got = 0
        while True:
            n = resp.readinto(view)
            if not n:
                break
            got += n
            if time.monotonic() > deadline:
                raise BenchError(f"download: not done after {deadline_s:.0f} s ({got} bytes)")
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    if got != size:
        raise BenchError(f"download: got {got} of {size} bytes")
    return seconds


_UPLOAD_BODY: bytes | None = None


def upload_body(size: int) -> bytes:
    """``size`` bytes to upload, made once per size."""
    global _UPLOAD_BODY
    if _UPLOAD_BODY is None or len(_UPLOAD_BODY) != size:
        _UPLOAD_BODY = bytes(range(256)) * (size // 256) + bytes(size % 256)
    return _UPLOAD_BODY


def post(port: int, endpoint: str, body: bytes) -> tuple[int, bytes, float]:
    """POST ``body`` to ``/<route>/<endpoint>``: the status, the answer and the seconds."""
    conn = http.client.HTTPConnection(HOST, port, timeout=BULK_TIMEOUT)
    try:
        t0 = time.perf_counter()
        conn.request("POST", f"/{ROUTE}/{endpoint}", body=body,
                     headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        answer = resp.read()
        return resp.status, answer, time.perf_counter() - t0
    finally:
        conn.close()


def upload(port: int, size: int) -> float:
    """POST size bytes to the sink; returns seconds. The sink answers with the length."""
    status, answer, seconds = post(port, "sink", upload_body(size))
    if status != 200 or answer != str(size).encode():
        raise BenchError(f"upload: HTTP {status}, body {answer[:100]!r}")
    return seconds


def slow_requests(port: int, total: int) -> tuple[int, float, list[str]]:
    """total threads each doing one GET /bench/slow; returns (ok, seconds, error samples)."""
    ok = [False] * total
    errs: list[str] = []
    go = threading.Event()

    def worker(i: int) -> None:
        go.wait()
        conn = http.client.HTTPConnection(HOST, port, timeout=SLOW_TIMEOUT)
        try:
            conn.request("GET", f"/{ROUTE}/slow?s={SLOW_SECONDS:g}")
            resp = conn.getresponse()
            body = resp.read()
            ok[i] = resp.status == 200 and body == b"slept"
            if not ok[i]:
                errs.append(f"HTTP {resp.status}")
        except (OSError, http.client.HTTPException) as err:
            errs.append(f"{type(err).__name__}: {err}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"slow-{i}", daemon=True)
               for i in range(total)]
    for thread in threads:
        thread.start()
    t0 = time.perf_counter()
    go.set()
    deadline = time.monotonic() + SLOW_TIMEOUT + 10
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return sum(ok), time.perf_counter() - t0, errs


# --------------------------------------------------------------------------- report


def rnd(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def ratio(tunnel: float | None, direct: float | None) -> float | None:
    return round(tunnel / direct, 3) if tunnel is not None and direct else None


def mbps(size: int, seconds: float | None) -> float | None:
    return round(size / seconds / MB, 1) if seconds else None


def fmt(value: Any, width: int, digits: int = 1) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.{digits}f}"
    else:
        text = str(value)
    return text.rjust(width)


def error_text(err: BaseException) -> str:
    return str(err) if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"


# --------------------------------------------------------------------------- head parsing

#: A typical browser-like request head: a request line and 10 header lines.
TYPICAL_HEAD = (
    b"GET /bench/bytes/1024?page=2&sort=name HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\nCookie: session=0123456789abcdef; theme=dark\r\n"
    b"Cache-Control: max-age=0\r\nX-Request-Id: 0a1b2c3d4e5f\r\nReferer: http://127.0.0.1/\r\n"
    b"\r\n"
)


def head_parse_cost(rounds: int = 5, number: int = 2000) -> dict[str, Any]:
    """Microseconds to read and parse TYPICAL_HEAD from a buffered stream, best of ``rounds``:
    the standard library's way (what the router did before) and the strict parser's."""
    import io
    import timeit
    from http.client import HTTPMessage, parse_headers

    from crank_sync.protocol.http_head import parse_client_head
    from crank_sync.router.http_io import read_request_head

    def stdlib() -> None:
        rfile = io.BufferedReader(io.BytesIO(TYPICAL_HEAD))
        rfile.readline(65537).decode("iso-8859-1").rstrip("\r\n").split()
        parse_headers(rfile)

    def strict() -> None:
        raw = read_request_head(io.BufferedReader(io.BytesIO(TYPICAL_HEAD)), 65536)
        message = HTTPMessage()
        for name, value in parse_client_head(raw or b"").headers:
            message[name] = value

    def us(op: Callable[[], None]) -> float:
        return round(min(timeit.repeat(op, number=number, repeat=rounds)) / number * 1e6, 2)

    result: dict[str, Any] = {"headers": TYPICAL_HEAD.count(b"\n") - 2,
                              "stdlib_us": us(stdlib), "strict_us": us(strict)}
    result["ratio"] = rnd(result["strict_us"] / result["stdlib_us"], 3)
    return result


def print_table(result: dict[str, Any], ctx: dict[str, Any]) -> None:
    out: list[str] = []
    mode = "quick mode" if ctx["quick"] else "full mode"
    out.append(f"crank_sync benchmark ({mode}; load generator: {result['load_generator']}, "
               f"{ctx['duration']:g} s per small-GET run; MB = 1e6 bytes; ratio = tunnel/direct)")
    out.append("")
    out.append(f"1. Small GETs ({SMALL_SIZE} B body)")
    out.append("protocol  conc  direct req/s  tunnel req/s  ratio  direct p50 ms  "
               "tunnel p50 ms  tunnel p99 ms  errors")
    for row in result["small_get"]:
        line = (f"{row['protocol']:<8}  {row['concurrency']:>4}  {fmt(row['direct_rps'], 12)}  "
                f"{fmt(row['tunnel_rps'], 12)}  {fmt(row['ratio'], 5, 3)}  "
                f"{fmt(row['direct_p50_ms'], 13, 3)}  {fmt(row['tunnel_p50_ms'], 13, 3)}  "
                f"{fmt(row['tunnel_p99_ms'], 13, 3)}  {fmt(row['errors'], 6)}")
        if row.get("error"):
            line += f"  unavailable: {row['error']}"
        out.append(line)
    proxy = result.get("small_ceiling") or []
    if proxy:
        out.append("  ceiling, a plain one-process reverse proxy (ThreadingHTTPServer + urllib3): "
                   + ", ".join(f"concurrency {row['concurrency']} "
                               + (f"error: {row['error']}" if row.get("error") else
                                  f"{fmt(row['rps'], 0)} req/s (ratio {fmt(row['ratio'], 0, 3)})")
                               for row in proxy))
    neighbours = result.get("slow_neighbour") or []
    if neighbours:
        out.append(f"  beside a slow neighbour (one client reading a large download at "
                   f"{SLOW_READER_RATE // 1000} KB/s on the same route):")
        out.append("  protocol  conc  req/s  p50 ms  p99 ms  alone p50  alone p99  "
                   "reader KB/s  errors")
        for row in neighbours:
            line = (f"  {row['protocol']:<8}  {row['concurrency']:>4}  {fmt(row['rps'], 5, 0)}  "
                    f"{fmt(row['p50_ms'], 6, 2)}  {fmt(row['p99_ms'], 6, 2)}  "
                    f"{fmt(row['alone_p50_ms'], 9, 2)}  {fmt(row['alone_p99_ms'], 9, 2)}  "
                    f"{fmt(row['slow_reader_kbps'], 11, 0)}  {fmt(row['errors'], 6)}")
            if row.get("error"):
                line += f"  error: {row['error']}"
            out.append(line)
    out.append("")
    out.append(f"2. Bulk transfers (protocol {ctx['bulk_protocol'] or '-'}), "
               f"median of {BULK_REPEATS} runs each")
    out.append("              bytes  direct s  direct MB/s  tunnel s  tunnel MB/s  ratio")
    for name in ("download", "upload"):
        sec = result[name]
        line = (f"{name:<8}  {sec['bytes']:>9}  {fmt(sec.get('direct_s'), 8, 3)}  "
                f"{fmt(sec['direct_mbps'], 11)}  {fmt(sec.get('tunnel_s'), 8, 3)}  "
                f"{fmt(sec['tunnel_mbps'], 11)}  {fmt(sec['ratio'], 5, 3)}")
        if sec.get("error"):
            line += f"  error: {sec['error']}"
        out.append(line)
    for protocol, sections in result.get("bulk_by_protocol", {}).items():
        if protocol == ctx["bulk_protocol"]:
            continue
        parts = []
        for name in ("download", "upload"):
            sec = sections[name]
            parts.append(f"{name} {fmt(sec.get('tunnel_mbps'), 0)} MB/s "
                         f"(ratio {fmt(sec.get('ratio'), 0, 3)})"
                         + (f" error: {sec['error']}" if sec.get("error") else ""))
        out.append(f"  protocol {protocol}: " + ", ".join(parts))
    ceiling = result.get("bulk_ceiling") or {}
    if ceiling.get("error"):
        out.append(f"  ceiling: error: {ceiling['error']}")
    elif ceiling:
        out.append("  ceiling, two bare Python TCP relays in a chain: " + ", ".join(
            f"{name} {fmt(ceiling[name]['mbps'], 0)} MB/s "
            f"(ratio {fmt(ceiling[name]['ratio'], 0, 3)})"
            for name in ("download", "upload") if name in ceiling))
    out.append("")
    rss = result["peak_rss_mib"]
    note = " (quick mode; full mode uses 1 GiB)" if ctx["quick"] else ""
    out.append(f"3. Peak RSS during a {ctx['rss_size'] // MIB} MiB download through the "
               f"tunnel{note}")
    line = f"router {fmt(rss['router'], 0)} MiB, connector {fmt(rss['connector'], 0)} MiB"
    if ctx.get("rss_seconds"):
        line += (f" (download took {ctx['rss_seconds']:.2f} s, "
                 f"{mbps(ctx['rss_size'], ctx['rss_seconds'])} MB/s)")
    if rss.get("error"):
        line += f"  error: {rss['error']}"
    out.append(line)
    out.append("")
    slow = result["slow"]
    note = f" (quick mode; full mode uses {SLOW_FULL})" if ctx["quick"] else ""
    out.append(f"4. {slow['total']} concurrent requests held {SLOW_SECONDS:g} s each{note}")
    line = (f"ok {fmt(slow['ok'], 0)}/{slow['total']}, router threads peak "
            f"{fmt(slow['router_threads_peak'], 0)}, router RSS peak "
            f"{fmt(slow['router_rss_mib_peak'], 0)} MiB")
    if ctx.get("slow_seconds"):
        line += f", all done in {ctx['slow_seconds']:.2f} s"
    if slow.get("error"):
        line += f"  error: {slow['error']}"
    out.append(line)
    head = result.get("head_parse_us")
    if head:
        out.append(f"\n5. Parsing a {head['headers']}-header request head: standard library "
                   f"{head['stdlib_us']} us, strict parser {head['strict_us']} us")
    print("\n".join(out), flush=True)


# --------------------------------------------------------------------------- main


def raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark crank_sync direct vs through "
                                                 "the tunnel (all on 127.0.0.1).")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs, 256 MiB RSS download, 100 slow requests (<60 s)")
    parser.add_argument("--json", action="store_true",
                        help="also print the results as one JSON object (last line)")
    parser.add_argument("--protocols", default="1.0,3.0",
                        help="comma-separated protocols to measure (default %(default)s)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per small-GET run (default 5, quick 2)")
    parser.add_argument("--window", type=int, default=8,
                        help="connector sliding window (default %(default)s)")
    parser.add_argument("--load-generator", choices=["auto", "wrk", "builtin"], default="auto",
                        help="small-GET load generator (default: wrk if on PATH)")
    parser.add_argument("--section", choices=["all", "tunnel", "peers"], default="all",
                        help="tunnel: sections 1-5; peers: only the table of peers "
                             "(scripts/bench_peers.py); all (default): both")
    parser.add_argument("--crank4go-connector", metavar="PATH",
                        help="the peers table: also a crank4go connector binary "
                             "(see scripts/bench_peers.py)")
    parser.add_argument("--router-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for run_router.py, e.g. --router-arg=--plugin "
                             "--router-arg=MODULE:FACTORY (repeatable): measures the router "
                             "with listeners or limits")
    args = parser.parse_args(argv)
    args.protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not args.protocols:
        parser.error("--protocols is empty")
    if args.duration is None:
        args.duration = 2.0 if args.quick else 5.0
    if not 0.5 <= args.duration <= 600:
        parser.error("--duration must be between 0.5 and 600 seconds")
    if args.crank4go_connector and not os.access(args.crank4go_connector, os.X_OK):
        parser.error(f"--crank4go-connector: {args.crank4go_connector} is not an executable "
                     "file")
    if args.load_generator == "auto":
        args.load_generator = "wrk" if shutil.which("wrk") else "builtin"
    elif args.load_generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH")
    return args


def run(args: argparse.Namespace, children: list[Child]) -> tuple[dict[str, Any], dict[str, Any]]:
    load: Callable[[int, str, int, float], Load] = (
        wrk_load if args.load_generator == "wrk" else builtin_load)
    quick = args.quick
    duration = args.duration
    warmup = max(1.0, duration / 2) if args.load_generator == "wrk" else max(0.5, duration / 4)
    rss_size = RSS_SIZE_QUICK if quick else RSS_SIZE_FULL
    slow_total = SLOW_QUICK if quick else SLOW_FULL
    ctx: dict[str, Any] = {"quick": quick, "duration": duration, "rss_size": rss_size,
                           "bulk_protocol": None}

    def progress(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    target_port = start_target(children)
    router, router_port, reg_port = start_router(children, args.router_arg)
    progress(f"target on {target_port}, router http {router_port} registration {reg_port}, "
             f"load generator {args.load_generator}")

    # Direct measurements (protocol independent).
    direct: dict[int, Load | str] = {}
    for conc in CONCURRENCIES:
        progress(f"direct small GETs, concurrency {conc}")
        try:
            direct[conc] = load(target_port, SMALL_PATH, conc, duration)
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            direct[conc] = error_text(err)
    bulk: dict[str, dict[str, Any]] = {
        "download": {"bytes": DOWNLOAD_SIZE, "direct_mbps": None, "tunnel_mbps": None,
                     "ratio": None, "direct_s": None, "tunnel_s": None},
        "upload": {"bytes": UPLOAD_SIZE, "direct_mbps": None, "tunnel_mbps": None,
                   "ratio": None, "direct_s": None, "tunnel_s": None},
    }
    bulk_ops: dict[str, Callable[[int], float]] = {
        "download": lambda port: median_of(BULK_REPEATS, lambda: download(port, DOWNLOAD_SIZE)),
        "upload": lambda port: median_of(BULK_REPEATS, lambda: upload(port, UPLOAD_SIZE)),
    }
    for name, op in bulk_ops.items():
        progress(f"direct {name}")
        try:
            seconds = op(target_port)
            bulk[name]["direct_s"] = round(seconds, 4)
            bulk[name]["direct_mbps"] = mbps(bulk[name]["bytes"], seconds)
        except Exception as err:  # noqa: BLE001
            bulk[name]["error"] = "direct: " + error_text(err)

    ceiling = relay_ceiling(children, target_port, bulk, bulk_ops, progress)
    proxy_ceiling = small_ceiling(children, target_port, direct, load, duration, warmup,
                                  progress)
    small_get: list[dict[str, Any]] = []
    neighbours: list[dict[str, Any]] = []
    by_protocol: dict[str, dict[str, dict[str, Any]]] = {}
    peak: dict[str, Any] = {"router": None, "connector": None}
    slow: dict[str, Any] = {"total": slow_total, "ok": None, "router_threads_peak": None,
                            "router_rss_mib_peak": None}
    for protocol in args.protocols:
        rows = []
        for conc in CONCURRENCIES:
            d = direct[conc]
            row: dict[str, Any] = {
                "protocol": protocol, "concurrency": conc,
                "direct_rps": None if isinstance(d, str) else round(d.rps, 1),
                "tunnel_rps": None, "ratio": None,
                "direct_p50_ms": None if isinstance(d, str) else rnd(d.p50_ms, 3),
                "tunnel_p50_ms": None, "tunnel_p99_ms": None, "errors": None,
            }
            if isinstance(d, Load) and d.errors:
                row["direct_errors"] = d.errors
            if isinstance(d, str):
                row["error"] = "direct: " + d
            rows.append(row)
        small_get.extend(rows)
        progress(f"starting connector, protocol {protocol}")
        connector: Child | None = None
        try:
            connector = start_connector(children, protocol, reg_port, target_port,
                                        router_port, args.window)
        except BenchError as err:
            children[-1].reported = True
            for row in rows:
                row["error"] = str(err)
            progress(f"protocol {protocol} unavailable: {err}")
            continue
        try:
            progress(f"tunnel warm-up ({warmup:g} s), protocol {protocol}")
            try:
                load(router_port, SMALL_PATH, max(CONCURRENCIES), warmup)
            except Exception as err:  # noqa: BLE001
                progress(f"warm-up failed: {error_text(err)}")
            for row in rows:
                conc = row["concurrency"]
                progress(f"tunnel small GETs, protocol {protocol}, concurrency {conc}")
                try:
                    t = load(router_port, SMALL_PATH, conc, duration)
                except Exception as err:  # noqa: BLE001
                    row["error"] = error_text(err)
                    continue
                row.update(tunnel_rps=round(t.rps, 1), ratio=ratio(t.rps, row["direct_rps"]),
                           tunnel_p50_ms=rnd(t.p50_ms, 3), tunnel_p99_ms=rnd(t.p99_ms, 3),
                           errors=t.errors)
            neighbours.extend(slow_neighbour(protocol, router_port, rows, load, duration,
                                             progress))
            if ctx["bulk_protocol"] is None:
                ctx["bulk_protocol"] = protocol
                run_bulk(ctx, bulk, bulk_ops, peak, slow, router, connector, router_port,
                         progress)
                by_protocol[protocol] = {n: dict(bulk[n]) for n in bulk}
            else:  # bulk transfers only, for comparison
                other = {n: {k: bulk[n][k] for k in ("bytes", "direct_mbps", "direct_s")}
                         for n in bulk}
                tunnel_bulk(other, bulk_ops, router_port, progress, f", protocol {protocol}")
                by_protocol[protocol] = other
        finally:
            progress(f"stopping connector, protocol {protocol}")
            connector.stop()

    if ctx["bulk_protocol"] is None:
        note = "no connector could be started"
        for name in ("download", "upload"):
            bulk[name].setdefault("error", note)
        peak["error"] = slow["error"] = note
    result = {
        "load_generator": args.load_generator,
        "small_get": small_get,
        "small_ceiling": proxy_ceiling,
        "slow_neighbour": neighbours,
        "download": bulk["download"],
        "upload": bulk["upload"],
        "peak_rss_mib": peak,
        "slow": slow,
        "quick": quick,
        "bulk_protocol": ctx["bulk_protocol"],
        "bulk_by_protocol": by_protocol,
        "bulk_ceiling": ceiling,
        "head_parse_us": head_parse_cost(),
        "notes": [
            "MB/s uses 1 MB = 1e6 bytes; ratio = tunnel/direct",
            f"bulk transfers: median of {BULK_REPEATS} runs each",
            f"small-GET runs last {duration:g} s each",
            f"peak RSS measured during a {rss_size // MIB} MiB download"
            + (" (quick mode; full mode uses 1 GiB)" if quick else ""),
            f"slow test uses {slow_total} requests"
            + (f" (quick mode; full mode uses {SLOW_FULL})" if quick else ""),
            "websocket masking: " + masking.implementation()
            + (" (the [speed] extra)" if masking.implementation() == "numpy"
               else " (install crank_sync[speed] for numpy: bulk transfers are bound by it)"),
        ] + ([f"router run with: {' '.join(args.router_arg)}"] if args.router_arg else []),
    }
    return result, ctx


class SlowReader:
    """A client that downloads SLOW_READER_SIZE bytes through ``port`` and reads them at
    about SLOW_READER_RATE bytes/s, in a thread, until stopped (bounded by ``max_seconds``)."""

    def __init__(self, port: int, max_seconds: float) -> None:
        self.port = port
        self.max_seconds = max_seconds
        self.received = 0
        self.error: str | None = None
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-reader", daemon=True)
        self._began = 0.0
        self._ended = 0.0

    def __enter__(self) -> SlowReader:
        self._thread.start()
        if not self.started.wait(REQUEST_TIMEOUT):
            self.error = self.error or "no response within the request timeout"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT)

    def rate_kbps(self) -> float | None:
        seconds = self._ended - self._began
        return round(self.received / seconds / 1000, 1) if seconds > 0 else None

    def _run(self) -> None:
        step = 0.05
        piece = int(SLOW_READER_RATE * step)
        try:
            with socket.create_connection((HOST, self.port), timeout=REQUEST_TIMEOUT) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
                sock.sendall(f"GET /{ROUTE}/bytes/{SLOW_READER_SIZE} HTTP/1.1\r\n"
                             f"Host: {HOST}\r\n\r\n".encode())
                self._began = time.monotonic()
                end = self._began + self.max_seconds
                while not self._stop.is_set() and time.monotonic() < end:
                    due = SLOW_READER_RATE * (time.monotonic() - self._began) - self.received
                    if due < piece and self.received:
                        self._stop.wait(step)
                        continue
                    data = sock.recv(piece)
                    if not data:
                        self.error = "the router closed the slow reader's connection"
                        break
                    self.received += len(data)
                    self.started.set()
        except OSError as err:
            self.error = error_text(err)
        finally:
            self._ended = time.monotonic()
            self.started.set()


def slow_neighbour(protocol: str, router_port: int, rows: list[dict[str, Any]],
                   load: Callable[[int, str, int, float], Load], duration: float,
                   progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Small GETs at each concurrency beside one client reading a large download slowly,
    on the same route; the small-GET rows of ``rows`` (same protocol) are the baseline."""
    out: list[dict[str, Any]] = []
    progress(f"slow neighbour, protocol {protocol}: small GETs beside a "
             f"{SLOW_READER_RATE // 1000} KB/s reader")
    with SlowReader(router_port, max_seconds=duration * len(rows) + 30) as reader:
        for base in rows:
            row: dict[str, Any] = {
                "protocol": protocol, "concurrency": base["concurrency"], "rps": None,
                "p50_ms": None, "p99_ms": None, "errors": None,
                "alone_p50_ms": base.get("tunnel_p50_ms"), "alone_p99_ms":
                base.get("tunnel_p99_ms"), "slow_reader_kbps": None,
            }
            out.append(row)
            if reader.error:
                row["error"] = "slow reader: " + reader.error
                continue
            try:
                t = load(router_port, SMALL_PATH, base["concurrency"], duration)
            except Exception as err:  # noqa: BLE001
                row["error"] = error_text(err)
                continue
            row.update(rps=round(t.rps, 1), p50_ms=rnd(t.p50_ms, 3), p99_ms=rnd(t.p99_ms, 3),
                       errors=t.errors)
    for row in out:
        row["slow_reader_kbps"] = reader.rate_kbps()
        if reader.error and "error" not in row:
            row["error"] = "slow reader: " + reader.error
    return out


def tunnel_bulk(bulk: dict[str, dict[str, Any]], bulk_ops: dict[str, Callable[[int], float]],
                router_port: int, progress: Callable[[str], None], label: str = "") -> None:
    """The download and the upload through the tunnel, into ``bulk``."""
    for name, op in bulk_ops.items():
        progress(f"tunnel {name}{label}")
        try:
            seconds = op(router_port)
            bulk[name]["tunnel_s"] = round(seconds, 4)
            bulk[name]["tunnel_mbps"] = mbps(bulk[name]["bytes"], seconds)
            bulk[name]["ratio"] = ratio(bulk[name]["tunnel_mbps"], bulk[name]["direct_mbps"])
        except Exception as err:  # noqa: BLE001
            bulk[name]["error"] = "tunnel: " + error_text(err)


def run_bulk(ctx: dict[str, Any], bulk: dict[str, dict[str, Any]],
             bulk_ops: dict[str, Callable[[int], float]], peak: dict[str, Any],
             slow: dict[str, Any], router: Child, connector: Child, router_port: int,
             progress: Callable[[str], None]) -> None:
    tunnel_bulk(bulk, bulk_ops, router_port, progress)

    rss_size = ctx["rss_size"]
    progress(f"tunnel {rss_size // MIB} MiB download with RSS sampling")
    pids = {"router": router.pid, "connector": connector.pid}
    try:
        with Sampler(pids, max_seconds=BULK_TIMEOUT * 3) as sampler:
            ctx["rss_seconds"] = download(router_port, rss_size, deadline_s=BULK_TIMEOUT * 3)
    except Exception as err:  # noqa: BLE001
        peak["error"] = error_text(err)
    peak["router"] = sampler.rss_mib("router")
    peak["connector"] = sampler.rss_mib("connector")

    total = slow["total"]
    progress(f"{total} concurrent slow requests ({SLOW_SECONDS:g} s each) through the tunnel")
    try:
        with Sampler({"router": router.pid}, max_seconds=SLOW_TIMEOUT + 20) as sampler:
            ok, seconds, errs = slow_requests(router_port, total)
        slow["ok"] = ok
        slow["seconds"] = round(seconds, 2)
        ctx["slow_seconds"] = seconds
        if errs:
            kinds: dict[str, int] = {}
            for e in errs:
                kinds[e] = kinds.get(e, 0) + 1
            top = sorted(kinds.items(), key=lambda kv: -kv[1])[:3]
            slow["error"] = "; ".join(f"{n}x {e}" for e, n in top)
    except Exception as err:  # noqa: BLE001
        slow["error"] = error_text(err)
    slow["router_threads_peak"] = sampler.threads["router"] or None
    slow["router_rss_mib_peak"] = sampler.rss_mib("router")


def run_peers(args: argparse.Namespace) -> dict[str, Any] | None:
    """Section 6, the table of peers (scripts/bench_peers.py), with processes of its own;
    None when interrupted."""
    import bench_peers

    return bench_peers.run_and_print(argparse.Namespace(
        quick=args.quick, duration=None, only=None, load_generator=args.load_generator,
        crank4go_connector=args.crank4go_connector), heading="\n6. ")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile_limit()

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    children: list[Child] = []
    started = time.monotonic()
    result: dict[str, Any] = {}
    try:
        if args.section != "peers":
            result, ctx = run(args, children)
    except BenchError as err:
        print(f"bench: cannot run: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for child in reversed(children):
            try:
                child.stop()
            except Exception as err:  # noqa: BLE001 - keep stopping the others
                print(f"bench: stopping {child.name}: {err}", file=sys.stderr)
        for child in children:
            tail = [] if child.reported else child.stderr_tail(3)
            if tail:
                print(f"[bench] {child.name} stderr (last lines):", file=sys.stderr)
                for line in tail:
                    print(f"    {line}", file=sys.stderr)
            child.stderr_file.close()
    if args.section != "peers":
        print_table(result, ctx)
    if args.section != "tunnel":
        peers = run_peers(args)
        if peers is None:
            return 130
        result["peers"] = peers
    print(f"(total {time.monotonic() - started:.1f} s)", flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
