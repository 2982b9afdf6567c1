#!/usr/bin/env python3
"""Requests/s of small GETs through nginx in front of 1, 2 and 4 crank_sync routers (each a
process of its own, each with a v3 connector process of its own, one stdlib target), all on
127.0.0.1. Needs nginx (Debian: nginx-light); uses wrk when it is on PATH, else the built-in
load generator of scripts/bench.py (which takes a core of its own on a small machine).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import (  # noqa: E402
    HOST,
    ROUTE,
    Child,
    builtin_load,
    start_connector,
    start_router,
    start_target,
    wrk_load,
)

DEPLOY = Path(__file__).resolve().parents[1] / "examples" / "deploy" / "nginx-crank.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def nginx_conf(router_ports: list[int], port: int, workdir: str) -> str:
    text = DEPLOY.read_text()
    head, _, rest = text.partition("# routers begin\n")
    _, _, tail = rest.partition("# routers end\n")
    servers = "".join(f"        server {HOST}:{p};\n" for p in router_ports)
    text = (head.rstrip(" ") + servers + tail).replace("LISTEN_PORT", str(port))
    text = text.replace("/var/lib/crank-lb", workdir)
    return ("user root;\n" if os.geteuid() == 0 else "") + text


def measure(count: int, concurrency: int, seconds: float, use_wrk: bool) -> dict[str, float]:
    children: list[Child] = []
    workdir = tempfile.mkdtemp(prefix="crank-scale-")
    proc: subprocess.Popen[bytes] | None = None
    try:
        target_port = start_target(children)
        ports = []
        for _ in range(count):
            _router, http_port, reg_port = start_router(children)
            start_connector(children, "3.0", reg_port, target_port, http_port, 2)
            ports.append(http_port)
        port = free_port()
        conf = Path(workdir) / "nginx.conf"
        conf.write_text(nginx_conf(ports, port, workdir))
        proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf),
                                 "-p", workdir, "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        path = f"/{ROUTE}/bytes/1024"
        load = (wrk_load if use_wrk else builtin_load)(port, path, concurrency, seconds)
        return {"routers": count, "rps": round(load.rps), "p99_ms": load.p99_ms or 0.0,
                "errors": load.errors}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for child in reversed(children):
            child.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", default="1,2,4", help="router counts (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        print("bench_scale: nginx is not installed: apt-get install nginx-light",
              file=sys.stderr)
        return 2
    use_wrk = shutil.which("wrk") is not None
    rows = []
    for count in (int(n) for n in args.routers.split(",")):
        row = measure(count, args.concurrency, args.duration, use_wrk)
        rows.append(row)
        print(f"{count} router(s) behind nginx: {row['rps']} requests/s, "
              f"p99 {row['p99_ms']:.1f} ms, {row['errors']} errors", flush=True)
    print(f"load generator: {'wrk' if use_wrk else 'built-in (threads)'}, "
          f"concurrency {args.concurrency}, {os.cpu_count()} cores")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
