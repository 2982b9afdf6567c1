#!/usr/bin/env python3
"""A bare TCP relay, for scripts/bench.py's ceiling: python scripts/tcp_relay.py --to PORT.

Listens on 127.0.0.1 (``--port``, 0 for any free port, printed as ``relay port: N``) and copies
bytes both ways between each client and 127.0.0.1:``--to`` with ``recv_into`` and ``sendall``:
no websocket, no HTTP, one thread per direction. Two of these in a chain are what any
two-process Python tunnel costs at the least, so the bench measures bulk transfers through them
as the ceiling for the router and connector pair. Stops on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

HOST = "127.0.0.1"
BUFFER = 64 * 1024
TIMEOUT = 30.0


def pump(src: socket.socket, dst: socket.socket) -> None:
    view = memoryview(bytearray(BUFFER))
    try:
        while True:
            n = src.recv_into(view)
            if not n:
                break
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client: socket.socket, to_port: int) -> None:
    try:
        upstream = socket.create_connection((HOST, to_port), timeout=TIMEOUT)
    except OSError:
        client.close()
        return
    with client, upstream:
        for sock in (client, upstream):
            sock.settimeout(TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=pump, args=(upstream, client), name="relay-back",
                                daemon=True)
        back.start()
        pump(client, upstream)
        back.join(TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    parser.add_argument("--to", type=int, required=True, help="port on 127.0.0.1 to relay to")
    args = parser.parse_args(argv)
    server = socket.create_server((HOST, args.port))
    server.settimeout(0.5)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print(f"relay port: {server.getsockname()[1]}", flush=True)
    running: list[tuple[threading.Thread, socket.socket]] = []
    while not stopping.is_set():
        try:
            client, _ = server.accept()
        except TimeoutError:
            running = [(t, c) for t, c in running if t.is_alive()]
            continue
        thread = threading.Thread(target=serve, args=(client, args.to), name="relay",
                                  daemon=True)
        thread.start()
        running.append((thread, client))
    server.close()
    for thread, client in running:  # unblock and join what is still relaying
        try:
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        thread.join(TIMEOUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
