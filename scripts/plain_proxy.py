#!/usr/bin/env python3
"""A plain reverse proxy, for scripts/bench.py's small-request ceiling:
python scripts/plain_proxy.py --to PORT.

One process, the same stack as crank_sync's two halves but nothing else: a
``ThreadingHTTPServer`` (TCP_NODELAY, HTTP/1.1 keep-alive) whose handler replays each GET on a
keep-alive urllib3 pool to 127.0.0.1:``--to`` and copies the status, headers and body back. No
websocket, no second process, no thread hand-off. What it serves per second bounds what any
tunnel built from these parts can serve on the machine. Listens on 127.0.0.1 (``--port``, 0 for
any free port, printed as ``proxy port: N``). Stops on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

import urllib3

HOST = "127.0.0.1"
TIMEOUT = 30.0
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-connection"})


def make_handler(pool: urllib3.HTTPConnectionPool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                resp = pool.urlopen("GET", self.path, headers=headers, retries=False,
                                    redirect=False, preload_content=True, decode_content=False)
            except urllib3.exceptions.HTTPError:
                self.send_error(502)
                return
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(resp.data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-response (wrk at its deadline) are not errors."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--to", type=int, required=True, help="port on 127.0.0.1 to proxy to")
    args = parser.parse_args(argv)
    pool = urllib3.HTTPConnectionPool(HOST, args.to, maxsize=64, block=False, retries=False,
                                      timeout=urllib3.Timeout(connect=5.0, read=TIMEOUT))
    server = Server((HOST, args.port), make_handler(pool))
    serving = threading.Thread(target=server.serve_forever, name="plain-proxy")

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, name="plain-proxy-stop").start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving.start()
    print(f"proxy port: {server.server_address[1]}", flush=True)
    while serving.is_alive():
        serving.join(0.5)
    server.server_close()
    pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
