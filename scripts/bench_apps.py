#!/usr/bin/env python3
"""The same small application as WSGI and as ASGI, and the peers of scripts/bench.py that
serve it in-process: python scripts/bench_apps.py MODE ROUTER_WS_URL [options].

Endpoints, under any first path segment (``/bench/bytes/1024`` and ``/x/bytes/1024`` are the
same), answering as scripts/bench_target.py does:

* ``GET .../bytes/N``: N bytes (at most 1 GiB) with Content-Length, in 64 KiB chunks;
* ``POST .../echo``: the request body back (read whole, as a typical application does);
* ``POST .../sink``: reads the body in 64 KiB chunks and answers with its length in ASCII.

Modes (each prints ``started`` once registered, and runs until SIGTERM or SIGINT):

* ``wsgi-connector``: a crank_sync ``Connector`` calling :func:`wsgi_app` in-process
  (``--protocol 3.0`` or ``1.0``);
* ``asgi-cc``: asgi-cc (a v3 connector for ASGI apps, ``pip install -e '.[bench]'``) serving
  :func:`asgi_app`;
* ``crank4py``: crank4py-connector (v1, ``pip install --no-deps crank4py-connector``) in front
  of the HTTP target given by ``--target``.

* ``gunicorn``: the same :func:`wsgi_app` under gunicorn, direct (no router); prints
  ``direct port: N``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
CHUNK = 64 * 1024
MAX_BYTES = 1024 * 1024 * 1024
_BLOCK = bytes(range(256)) * (CHUNK // 256)
ROUTE = "bench"
NOT_FOUND = b"no such endpoint\n"


def _endpoint(path: str) -> tuple[str, str]:
    """(endpoint, argument) of ``/<route>/<endpoint>/<argument>``."""
    parts = path.split("/")
    return (parts[2] if len(parts) > 2 else ""), (parts[3] if len(parts) > 3 else "")


def _blocks(size: int) -> Iterator[bytes]:
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        yield _BLOCK
    if rest:
        yield _BLOCK[:rest]


def _size(argument: str) -> int | None:
    return int(argument) if argument.isdigit() and int(argument) <= MAX_BYTES else None


# -- WSGI ---------------------------------------------------------------------------------

def _answer(start_response: Callable[..., Any], status: str, body: bytes,
            content_type: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    endpoint, argument = _endpoint(environ.get("PATH_INFO", ""))
    stream = environ["wsgi.input"]
    if endpoint == "bytes" and (size := _size(argument)) is not None:
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return _blocks(size)
    if endpoint == "echo":
        length = environ.get("CONTENT_LENGTH", "")
        body = stream.read(int(length)) if length.isdigit() else stream.read()
        return _answer(start_response, "200 OK", body, "application/octet-stream")
    if endpoint == "sink":
        total = 0
        while chunk := stream.read(CHUNK):
            total += len(chunk)
        return _answer(start_response, "200 OK", str(total).encode())
    return _answer(start_response, "404 Not Found", NOT_FOUND)


# -- ASGI ---------------------------------------------------------------------------------

async def _send_body(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    endpoint, argument = _endpoint(scope["path"])
    parts: list[bytes] = []
    total = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        total += len(chunk)
        if endpoint == "echo":
            parts.append(chunk)
        more = message.get("more_body", False)
    if endpoint == "bytes" and (size := _size(argument)) is not None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(size).encode())]})
        for block in _blocks(size):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif endpoint == "echo":
        await _send_body(send, 200, b"".join(parts), "application/octet-stream")
    elif endpoint == "sink":
        await _send_body(send, 200, str(total).encode(), "text/plain")
    else:
        await _send_body(send, 404, NOT_FOUND, "text/plain")


# -- the peers ----------------------------------------------------------------------------

def _stop_event() -> threading.Event:
    """Set on SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for_stop() -> None:
    stop = _stop_event()
    while not stop.wait(1.0):
        pass


def run_wsgi_connector(args: argparse.Namespace) -> int:
    import crank_sync

    connector = crank_sync.Connector(target=wsgi_app, route=ROUTE, routers=[args.router],
                                     protocols=(args.protocol,),
                                     sliding_window=args.sliding_window,
                                     component_name="bench-wsgi")
    connector.start()
    deadline = time.monotonic() + 20
    while connector.idle_count() == 0:
        if time.monotonic() > deadline:
            print("not registered within 20 s", file=sys.stderr)
            connector.stop()
            return 1
        time.sleep(0.05)
    print("started", flush=True)
    _wait_for_stop()
    connector.stop(timeout=5)
    return 0


def run_asgi_cc(args: argparse.Namespace) -> int:
    from asgi_cc import CrankerConnector, CrankerConnectorConfig

    stop = _stop_event()

    async def serve() -> None:
        config = CrankerConnectorConfig(router_urls=[args.router], route=ROUTE,
                                        component_name="bench-asgi-cc",
                                        deregister_timeout_seconds=5.0)
        connector = CrankerConnector(asgi_app, config)
        await connector.startup()
        print("started", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await connector.shutdown()

    asyncio.run(serve())
    return 0


def run_crank4py(args: argparse.Namespace) -> int:
    from crank4py_connector import Config, create_and_start_connector

    if not args.target:
        print("crank4py: --target http://HOST:PORT is required", file=sys.stderr)
        return 2
    connector = create_and_start_connector(Config(args.target, ROUTE, [args.router],
                                                  component_name="bench-crank4py"))
    print("started", flush=True)
    _wait_for_stop()
    connector.shutdown()
    sys.stdout.flush()
    os._exit(0)  # it leaves non-daemon pool threads behind


def run_gunicorn(args: argparse.Namespace) -> int:
    """gunicorn serving :func:`wsgi_app` on a port bound here (so it can be port 0): one
    process, ``--threads`` threads (gthread), as one in-process connector is one process."""
    import socket
    import tempfile

    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.set_inheritable(True)
    print(f"direct port: {listener.getsockname()[1]}", flush=True)
    control = os.path.join(tempfile.mkdtemp(prefix="bench-gunicorn-"), "ctl")
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--chdir", SCRIPTS,
                              "--bind", f"fd://{listener.fileno()}", "--workers", "1",
                              "--worker-class", "gthread", "--threads", str(args.threads),
                              "--log-level", "warning", "--control-socket", control,
                              "bench_apps:wsgi_app"])


MODES = {"wsgi-connector": run_wsgi_connector, "asgi-cc": run_asgi_cc, "crank4py": run_crank4py,
         "gunicorn": run_gunicorn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("router", nargs="?", default="",
                        help="the router's registration URL, ws://HOST:PORT")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn: worker threads")
    parser.add_argument("--protocol", choices=["1.0", "3.0"], default="3.0")
    parser.add_argument("--sliding-window", type=int, default=2)
    parser.add_argument("--target", help="crank4py: the HTTP target's URL")
    args = parser.parse_args(argv)
    return MODES[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
