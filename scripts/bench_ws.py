#!/usr/bin/env python3
"""Benchmark websockets through the tunnel (all on 127.0.0.1): small echoes at concurrency 1
and 16 direct and through a v3 connector, 10 MB messages, a 200 MB one-way stream to a slow
reader (the router's and connector's memory), and the router's memory with 500 idle websockets.

The service (simple-websocket), the router and the connector run in processes of their own;
the clients (websocket-client) in this one. ``--quick`` makes every part smaller.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import statistics
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import HOST, SCRIPTS, Child, start_router  # noqa: E402

ROUTE = "bench"
STARTUP = 30.0


# -- the service (run as ``bench_ws.py --serve``) ------------------------------------------


def serve() -> None:
    """Echo at /r/echo; /r/stream?mb=N sends N MiB in 64 KiB binary messages, then closes."""
    import simple_websocket

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            environ = {"werkzeug.socket": self.connection}
            for name, value in self.headers.items():
                environ["HTTP_" + name.upper().replace("-", "_")] = value
            ws = simple_websocket.Server(environ, max_message_size=None, ping_interval=None)
            self.close_connection = True
            try:
                if "/vanish" in self.path:  # gone without a close frame, after one message
                    ws.receive()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if "/stream" in self.path:
                    mib = int(self.path.rsplit("mb=", 1)[1])
                    chunk = b"s" * 65536
                    for _ in range(mib * 16):
                        ws.send(chunk)
                    ws.close()
                    return
                while True:
                    ws.send(ws.receive())
            except simple_websocket.ConnectionClosed:
                pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    print(f"service port: {server.server_address[1]}", flush=True)
    server.serve_forever()


# -- measurements ---------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def echo_rate(url: str, concurrency: int, seconds: float) -> float:
    """Round trips of a 32-byte text message per second, over ``concurrency`` clients."""
    import websocket

    clients = [websocket.create_connection(url, timeout=30) for _ in range(concurrency)]
    counts = [0] * concurrency
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        ws, message = clients[i], "x" * 32
        while time.monotonic() < stop:
            ws.send(message)
            ws.recv()
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,), name=f"bench-ws-{i}")
               for i in range(concurrency)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.monotonic() - began
    for ws in clients:
        ws.close()
    return sum(counts) / elapsed


def big_messages(url: str, size: int, rounds: int) -> float:
    """MB/s of payload echoed (each round sends ``size`` bytes and gets them back)."""
    import websocket

    ws = websocket.create_connection(url, timeout=60)
    data = os.urandom(size)
    began = time.monotonic()
    for _ in range(rounds):
        ws.send_binary(data)
        assert ws.recv() == data
    elapsed = time.monotonic() - began
    ws.close()
    return size * rounds / elapsed / 1e6


def slow_stream(url: str, mib: int, pids: dict[str, int]) -> dict[str, Any]:
    """A client reading ``mib`` MiB slowly (a pause after each 64 KiB message): the peak RSS
    of the router and the connector while it runs, against theirs before."""
    import websocket

    before = {name: rss_mib(pid) for name, pid in pids.items()}
    peak = dict(before)
    ws = websocket.create_connection(f"{url}?mb={mib}", timeout=60)
    got, began = 0, time.monotonic()
    try:
        while True:
            try:
                data = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                break
            if not data:
                break
            got += len(data)
            if got % (4 << 20) < 65536:
                for name, pid in pids.items():
                    peak[name] = max(peak[name], rss_mib(pid))
            time.sleep(0.002)  # the slow reader, about 30 MB/s (pacing, not waiting for anything)
    finally:
        ws.close()
    return {"mib": got / (1 << 20), "seconds": round(time.monotonic() - began, 1),
            **{f"{n}_rss_before_mib": round(before[n], 1) for n in pids},
            **{f"{n}_rss_peak_mib": round(peak[n], 1) for n in pids}}


def vanish_seconds(url: str, trials: int) -> dict[str, float]:
    """How long after the service drops its connection the client's websocket ends."""
    import websocket

    times = []
    for _ in range(trials):
        ws = websocket.create_connection(url, timeout=30)
        began = time.monotonic()
        ws.send("go")
        try:
            while ws.recv():
                pass
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            pass
        times.append(time.monotonic() - began)
        ws.close()
    return {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}


def idle_websockets(url: str, count: int, pids: dict[str, int]) -> dict[str, Any]:
    import websocket

    before = {name: rss_mib(pid) for name, pid in pids.items()}
    clients = []
    try:
        for _ in range(count):
            clients.append(websocket.create_connection(url, timeout=30))
        time.sleep(1.0)  # let the processes settle before reading their memory
        after = {name: rss_mib(pid) for name, pid in pids.items()}
        clients[0].send("still there")
        assert clients[0].recv() == "still there"
    finally:
        for ws in clients:
            ws.close()
    return {"open": len(clients),
            **{f"{n}_rss_before_mib": round(before[n], 1) for n in pids},
            **{f"{n}_rss_with_them_mib": round(after[n], 1) for n in pids},
            **{f"{n}_kib_each": round((after[n] - before[n]) * 1024 / count, 1) for n in pids}}


def start_connector(children: list[Child], reg_port: int, service_port: int,
                    router_port: int) -> Child:
    import websocket

    child = Child("connector", [
        os.path.join(SCRIPTS, "run_connector.py"), "--router", f"ws://{HOST}:{reg_port}",
        "--route", ROUTE, "--target", f"http://{HOST}:{service_port}", "--protocol", "3.0",
        "--stop-timeout", "2", "--log-level", "WARNING",
    ])
    children.append(child)
    deadline = time.monotonic() + STARTUP
    child.wait_for(r"connector .* serving route", deadline)
    while True:
        try:
            websocket.create_connection(f"ws://{HOST}:{router_port}/{ROUTE}/echo",
                                        timeout=5).close()
            return child
        except Exception:  # noqa: BLE001 - not registered yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (<30 s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    seconds, stream_mib, idle = (1.5, 40, 100) if args.quick else (4.0, 200, 500)
    children: list[Child] = []
    results: dict[str, Any] = {}
    try:
        service = Child("service", [os.path.abspath(__file__), "--serve"])
        children.append(service)
        service_port = int(service.wait_for(r"service port: (\d+)",
                                            time.monotonic() + STARTUP).group(1))
        router, router_port, reg_port = start_router(children)
        connector = start_connector(children, reg_port, service_port, router_port)
        direct = f"ws://{HOST}:{service_port}/{ROUTE}"
        tunnel = f"ws://{HOST}:{router_port}/{ROUTE}"
        for concurrency in (1, 16):
            d = echo_rate(f"{direct}/echo", concurrency, seconds)
            t = echo_rate(f"{tunnel}/echo", concurrency, seconds)
            results[f"echo_c{concurrency}"] = {"direct_per_s": round(d), "tunnel_per_s": round(t),
                                               "ratio": round(t / d, 3)}
            print(f"echo c={concurrency}: direct {d:.0f}/s, tunnel {t:.0f}/s", flush=True)
        rounds = 2 if args.quick else 5
        d = big_messages(f"{direct}/echo", 10 << 20, rounds)
        t = big_messages(f"{tunnel}/echo", 10 << 20, rounds)
        results["10MB_echo"] = {"direct_MB_s": round(d, 1), "tunnel_MB_s": round(t, 1)}
        print(f"10 MB echo: direct {d:.1f} MB/s, tunnel {t:.1f} MB/s", flush=True)
        results["service_vanishes"] = vanish_seconds(f"{tunnel}/vanish", 10)
        print(f"service gone, client closed after: {results['service_vanishes']}", flush=True)
        pids = {"router": router.pid, "connector": connector.pid}
        results["slow_stream"] = slow_stream(f"{tunnel}/stream", stream_mib, pids)
        print(f"slow {stream_mib} MiB stream: {results['slow_stream']}", flush=True)
        results["idle"] = idle_websockets(f"{tunnel}/echo", idle, pids)
        print(f"{idle} idle websockets: {results['idle']}", flush=True)
    finally:
        for child in reversed(children):
            child.stop()
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
