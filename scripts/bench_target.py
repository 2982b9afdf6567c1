#!/usr/bin/env python3
"""Target service for scripts/bench.py: python scripts/bench_target.py [--port 0].

A stdlib ThreadingHTTPServer (HTTP/1.1, keep-alive, TCP_NODELAY) on 127.0.0.1; prints
``target port: N`` once listening and serves until SIGTERM/SIGINT. Endpoints (any path
prefix is accepted, so /bench/bytes/10 and /bytes/10 are the same):

* ``GET .../bytes/N``  -- N bytes with Content-Length, written in 64 KiB slices;
* ``POST .../echo``    -- the request body echoed back (buffered, at most 256 MiB);
* ``POST .../sink``    -- reads and discards the body, answers with its length in ASCII;
* ``GET .../slow?s=S`` -- sleeps S seconds (at most 60), then answers ``slept``.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SLICE = 64 * 1024
_BUFFER = memoryview(bytes(range(256)) * (SLICE // 256))
MAX_ECHO = 256 * 1024 * 1024
MAX_SLEEP = 60.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "bench-target"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- helpers -------------------------------------------------------------------------

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_exactly(self, size: int, parts: list[bytes] | None) -> int:
        """Read ``size`` body bytes, appended to ``parts`` unless it is None; returns ``size``."""
        remaining = size
        while remaining:
            chunk = self.rfile.read(min(remaining, SLICE))
            if not chunk:
                raise ConnectionError("body ended early")
            remaining -= len(chunk)
            if parts is not None:
                parts.append(chunk)
        return size

    def _read_body(self, sink: bool) -> tuple[int, bytes]:
        """Read the request body (Content-Length or chunked); keep it unless sink."""
        parts: list[bytes] = []
        keep = None if sink else parts
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += self._read_exactly(size, keep)
                self.rfile.readline(1024)
        else:
            total += self._read_exactly(int(self.headers.get("Content-Length") or 0), keep)
        if not sink and total > MAX_ECHO:
            raise ValueError("echo body too large")
        return total, b"".join(parts)

    # -- methods -------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "bytes" and parts[-1].isdigit():
            size = int(parts[-1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            remaining = size
            while remaining:
                n = min(remaining, SLICE)
                self.wfile.write(_BUFFER[:n])
                remaining -= n
        elif parts and parts[-1] == "slow":
            try:
                seconds = float(parse_qs(url.query).get("s", ["2"])[0])
            except ValueError:
                seconds = 2.0
            time.sleep(min(max(seconds, 0.0), MAX_SLEEP))
            self._reply(200, b"slept")
        else:
            self._reply(404, b"not found")

    def do_POST(self) -> None:
        name = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        if name not in ("echo", "sink"):
            self._read_body(sink=True)
            self._reply(404, b"not found")
            return
        total, body = self._read_body(sink=name == "sink")
        if name == "sink":
            self._reply(200, str(total).encode("ascii"))
        else:
            self._reply(200, body, "application/octet-stream")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-response (wrk at its deadline) are not errors."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark target service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = Server((args.host, args.port), Handler)
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="bench-target", daemon=True)
    thread.start()
    print(f"target port: {server.server_address[1]}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
