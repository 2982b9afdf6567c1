#!/usr/bin/env python3
"""crank_sync beside what a user could run in its place: python scripts/bench_peers.py
[--quick] [--json] [--crank4go-connector PATH]

One run, one router (ours), one target (scripts/bench_target.py) and one application
(scripts/bench_apps.py, as WSGI and as ASGI); the peers take turns, one at a time:

* ``target direct`` and ``gunicorn direct`` (the WSGI app, one process, 16 threads): no tunnel;
* ``plain proxy``: scripts/plain_proxy.py, the design card's parts with no tunnel (the ceiling);
* ``crank_sync v3`` and ``crank_sync v1``: our connector, HTTP target;
* ``crank_sync WSGI v3`` and ``WSGI v1``: our connector calling the WSGI app in-process;
* ``asgi-cc``: a Python v3 connector calling the ASGI app in-process (the ``bench`` extra);
* ``crank4py-connector``: a Python v1 connector, HTTP target (``pip install --no-deps
  crank4py-connector``, as .ci/run does);
* ``crank4go``: crank4go's Go v1 connector, HTTP target, when ``--crank4go-connector`` names a
  binary taking ``ROUTER_WS_URL TARGET_URL ROUTE WINDOW`` and printing ``started``.

Each row: small GETs (1 KiB) at concurrency 1 and 16 (req/s, p50, p99), a 32 MiB POST echo and
a 100 MiB download (MB/s, the median of three; quick: one), the RSS of the peer's process
(the row's own process: the connector, or the direct server) idle and at its peak, and the
router's peak; then a 1 GiB upload (quick: 128 MiB) to an endpoint reading it in 64 KiB
chunks, with the peer's peak RSS during it. Then
the ratios a user asks about, each between two rows of this run. A peer that is not installed
or does not start is reported with its reason, and the rest still run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bench
from bench import HOST, ROUTE, SCRIPTS, BenchError, Child, Load, Sampler

ECHO_SIZE = 32 * 1024 * 1024
DOWNLOAD_SIZE = 100 * 1024 * 1024
#: The long upload to the chunk-reading ``sink`` endpoint (quick: 128 MiB).
SINK_FULL = 1024 * 1024 * 1024
SINK_QUICK = 128 * 1024 * 1024
WINDOW = 8


@dataclass
class Peer:
    name: str
    #: ``direct`` rows are served without the router.
    direct: bool
    start: Callable[[dict[str, Any]], tuple[Child, int]]
    #: The bulk transfers it serves (the plain proxy relays GETs only).
    bulk: tuple[str, ...] = ("echo", "download")


def _connector(name: str, args: list[str], program: str | None = None
               ) -> Callable[[dict[str, Any]], tuple[Child, int]]:
    """A peer registered at our router; ``args`` may use {reg} and {target}."""

    def start(env: dict[str, Any]) -> tuple[Child, int]:
        filled = [a.format(reg=f"ws://{HOST}:{env['reg_port']}",
                           target=f"http://{HOST}:{env['target_port']}") for a in args]
        child = Child(name, filled, program=program)
        env["children"].append(child)
        bench.await_route(child, env["router_port"], time.monotonic() + bench.READY_DEADLINE)
        return child, env["router_port"]

    return start


def _direct(name: str, args: list[str], pattern: str
            ) -> Callable[[dict[str, Any]], tuple[Child, int]]:
    def start(env: dict[str, Any]) -> tuple[Child, int]:
        child = Child(name, [a.format(target=env["target_port"]) for a in args])
        env["children"].append(child)
        port = int(child.wait_for(pattern, time.monotonic() + bench.STARTUP_DEADLINE).group(1))
        bench.await_route(child, port, time.monotonic() + bench.READY_DEADLINE)
        return child, port

    return start


def _target_direct(env: dict[str, Any]) -> tuple[Child, int]:
    return env["target"], env["target_port"]


def peers(crank4go: str | None) -> list[Peer]:
    apps = os.path.join(SCRIPTS, "bench_apps.py")
    ours = [os.path.join(SCRIPTS, "run_connector.py"), "--router", "{reg}", "--route", ROUTE,
            "--target", "{target}", "--window", str(WINDOW), "--stop-timeout", "2",
            "--log-level", "WARNING", "--protocol"]
    wsgi = [apps, "wsgi-connector", "{reg}", "--sliding-window", str(WINDOW), "--protocol"]
    found = [
        Peer("target direct", True, _target_direct),
        Peer("gunicorn direct", True, _direct("gunicorn", [apps, "gunicorn"],
                                              r"direct port: (\d+)")),
        Peer("plain proxy", True, _direct("plain-proxy", [
            os.path.join(SCRIPTS, "plain_proxy.py"), "--to", "{target}"], r"proxy port: (\d+)"),
             bulk=("download",)),
        Peer("crank_sync v3", False, _connector("crank_sync v3", [*ours, "3.0"])),
        Peer("crank_sync v1", False, _connector("crank_sync v1", [*ours, "1.0"])),
        Peer("crank_sync WSGI v3", False, _connector("WSGI v3", [*wsgi, "3.0"])),
        Peer("crank_sync WSGI v1", False, _connector("WSGI v1", [*wsgi, "1.0"])),
        Peer("asgi-cc", False, _connector("asgi-cc", [apps, "asgi-cc", "{reg}"])),
        Peer("crank4py-connector", False, _connector("crank4py", [
            apps, "crank4py", "{reg}", "--target", "{target}"])),
    ]
    if crank4go:
        found.append(Peer("crank4go", False, _connector(
            "crank4go", ["{reg}", "{target}", ROUTE, str(WINDOW)], program=crank4go)))
    return found


def echo(port: int, size: int) -> float:
    """POST ``size`` bytes to the echo endpoint and check they come back; returns seconds."""
    body = bench.upload_body(size)
    status, answer, seconds = bench.post(port, "echo", body)
    if status != 200 or answer != body:
        raise BenchError(f"echo: HTTP {status}, {len(answer)} of {size} bytes back")
    return seconds


def _serving_pid(pid: int) -> int:
    """The process that serves: gunicorn's one worker, not its arbiter; else ``pid`` itself."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return pid
    return int(children[0]) if len(children) == 1 else pid


def measure(peer: Peer, env: dict[str, Any], quick: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"peer": peer.name}
    child, port = peer.start(env)
    load, duration = env["load"], env["duration"]
    pids = {"peer": _serving_pid(child.pid), "router": env["router"].pid}
    repeats = 1 if quick else bench.BULK_REPEATS
    try:
        with Sampler(pids, max_seconds=1) as idle:
            pass
        row["peer_idle_rss_mib"] = idle.rss_mib("peer")
        with Sampler(pids, max_seconds=600) as sampler:
            load(port, bench.SMALL_PATH, max(bench.CONCURRENCIES), env["warmup"])
            for conc in bench.CONCURRENCIES:
                got: Load = load(port, bench.SMALL_PATH, conc, duration)
                row[f"c{conc}"] = {"rps": round(got.rps, 1), "p50_ms": bench.rnd(got.p50_ms, 3),
                                   "p99_ms": bench.rnd(got.p99_ms, 3), "errors": got.errors}
            for name, size, op in (("echo", ECHO_SIZE, echo), ("download", DOWNLOAD_SIZE,
                                                                bench.download)):
                if name not in peer.bulk:
                    continue
                try:
                    seconds = bench.median_of(repeats, lambda op=op, size=size: op(port, size))
                    row[f"{name}_mbps"] = bench.mbps(size, seconds)
                except (BenchError, OSError, http.client.HTTPException) as err:
                    row[f"{name}_error"] = bench.error_text(err)
        row["peer_rss_mib"] = sampler.rss_mib("peer")
        row["router_rss_mib"] = None if peer.direct else sampler.rss_mib("router")
        if "echo" in peer.bulk:  # a long upload to an application reading it in chunks
            size = SINK_QUICK if quick else SINK_FULL
            with Sampler(pids, max_seconds=600) as sink:
                try:
                    row["sink_mbps"] = bench.mbps(size, bench.upload(port, size))
                except (BenchError, OSError, http.client.HTTPException) as err:
                    row["sink_error"] = bench.error_text(err)
            row["sink_rss_mib"] = sink.rss_mib("peer")
    finally:
        if child is not env["target"]:
            child.stop()
            env["children"].remove(child)
    return row


#: (label, numerator row, denominator row, figure): the comparisons the README reports.
RATIOS = [
    ("WSGI in-process v3 / asgi-cc, c=16", "crank_sync WSGI v3", "asgi-cc", "c16"),
    ("WSGI in-process v3 / asgi-cc, 32 MiB echo", "crank_sync WSGI v3", "asgi-cc", "echo_mbps"),
    ("WSGI in-process v3 / gunicorn direct, c=16", "crank_sync WSGI v3", "gunicorn direct",
     "c16"),
    ("WSGI in-process v1 / gunicorn direct, c=16", "crank_sync WSGI v1", "gunicorn direct",
     "c16"),
    ("crank_sync v3 / plain proxy, c=16", "crank_sync v3", "plain proxy", "c16"),
    ("crank_sync v3 / plain proxy, c=1", "crank_sync v3", "plain proxy", "c1"),
    ("crank_sync v1 / crank4go, c=16", "crank_sync v1", "crank4go", "c16"),
    ("crank_sync v1 / crank4go, download", "crank_sync v1", "crank4go", "download_mbps"),
    ("crank_sync v1 / crank4py-connector, c=16", "crank_sync v1", "crank4py-connector", "c16"),
    ("crank_sync v3 / target direct, c=16", "crank_sync v3", "target direct", "c16"),
]


def _figure(row: dict[str, Any] | None, key: str) -> float | None:
    if row is None:
        return None
    value = row.get(key)
    return value.get("rps") if isinstance(value, dict) else value


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {row["peer"]: row for row in rows}
    return [{"what": label, "ratio": bench.ratio(_figure(by_name.get(top), key),
                                                 _figure(by_name.get(bottom), key))}
            for label, top, bottom, key in RATIOS]


def run(args: argparse.Namespace, children: list[Child]) -> dict[str, Any]:
    quick = args.quick
    duration = args.duration or (1.0 if quick else 5.0)
    load = bench.wrk_load if args.load_generator == "wrk" else bench.builtin_load
    target_port = bench.start_target(children)
    router, router_port, reg_port = bench.start_router(children)
    env: dict[str, Any] = {
        "children": children, "target": children[0], "target_port": target_port,
        "router": router, "router_port": router_port, "reg_port": reg_port, "load": load,
        "duration": duration, "warmup": 1.0 if quick else 2.0,
    }
    rows: list[dict[str, Any]] = []
    for peer in peers(args.crank4go_connector):
        if args.only and peer.name not in args.only:
            continue
        print(f"[bench] {peer.name}", file=sys.stderr, flush=True)
        try:
            rows.append(measure(peer, env, quick))
        except (BenchError, OSError) as err:
            rows.append({"peer": peer.name, "error": bench.error_text(err)})
    return {"load_generator": args.load_generator, "duration_s": duration, "quick": quick,
            "echo_bytes": ECHO_SIZE, "download_bytes": DOWNLOAD_SIZE, "rows": rows,
            "ratios": ratios(rows)}


def table(result: dict[str, Any]) -> str:
    fmt = bench.fmt
    out = [f"Peers ({'quick' if result['quick'] else 'full'} mode; {result['load_generator']}, "
           f"{result['duration_s']:g} s per small-GET run; 1 KiB GETs; MB = 1e6 bytes)",
           "peer                 c=1 req/s  c=16 req/s  c16 p50 ms  c16 p99 ms  "
           "echo MB/s  download MB/s  RSS idle/peak  router RSS  upload MB/s  its RSS"]
    for row in result["rows"]:
        if row.get("error"):
            out.append(f"{row['peer']:<19}  unavailable: {row['error']}")
            continue
        c1, c16 = row["c1"], row["c16"]
        line = (f"{row['peer']:<19}  {fmt(c1['rps'], 9, 0)}  {fmt(c16['rps'], 10, 0)}  "
                f"{fmt(c16['p50_ms'], 10, 2)}  {fmt(c16['p99_ms'], 10, 2)}  "
                f"{fmt(row.get('echo_mbps'), 9, 0)}  {fmt(row.get('download_mbps'), 13, 0)}  "
                f"{fmt(row['peer_idle_rss_mib'], 6, 0)}/{fmt(row['peer_rss_mib'], 6, 0)}  "
                f"{fmt(row['router_rss_mib'], 10, 0)}  {fmt(row.get('sink_mbps'), 11, 0)}  "
                f"{fmt(row.get('sink_rss_mib'), 7, 0)}")
        errors = c1["errors"] + c16["errors"]
        notes = [f"{errors} errors"] if errors else []
        notes += [row[k] for k in ("echo_error", "download_error", "sink_error") if row.get(k)]
        out.append(line + (f"  ({'; '.join(notes)})" if notes else ""))
    out.append("")
    out.extend(f"{r['what']:<46} {fmt(r['ratio'], 6, 3)}" for r in result["ratios"])
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 s runs, one bulk run (<90 s)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    parser.add_argument("--duration", type=float, help="seconds per small-GET run")
    parser.add_argument("--load-generator", choices=["auto", "wrk", "builtin"], default="auto")
    parser.add_argument("--crank4go-connector", metavar="PATH",
                        help="a crank4go connector binary (see the module docstring)")
    parser.add_argument("--only", action="append", metavar="PEER",
                        help="measure only this row (repeatable)")
    args = parser.parse_args(argv)
    if args.load_generator == "auto":
        args.load_generator = "wrk" if bench.shutil.which("wrk") else "builtin"
    if args.crank4go_connector and not os.access(args.crank4go_connector, os.X_OK):
        parser.exit(2, f"--crank4go-connector: {args.crank4go_connector} is not an "
                       "executable file\n")
    return args


def run_and_print(args: argparse.Namespace, heading: str = "") -> dict[str, Any] | None:
    """:func:`run` with processes of its own, stopped after; prints the table. A result with
    an "error" when it could not run, None when interrupted."""
    children: list[Child] = []
    try:
        result = run(args, children)
    except BenchError as err:
        print(f"bench: peers: cannot run: {err}", file=sys.stderr)
        return {"error": str(err)}
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return None
    finally:
        for child in reversed(children):
            child.stop()
            child.stderr_file.close()
    print(heading + table(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench.raise_nofile_limit()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    result = run_and_print(args)
    if result is None:
        return 130
    if "error" in result:
        return 1
    print(f"(total {time.monotonic() - started:.1f} s)", flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
