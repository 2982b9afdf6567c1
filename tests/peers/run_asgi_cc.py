"""Runs asgi-cc (a Cranker v3 connector for ASGI apps, from PyPI) in its own process for the
tests, in front of the small ASGI app below.

Usage: ``python run_asgi_cc.py ROUTER_WS_URL ROUTE``. Prints ``started`` once the connector's
``startup()`` returned, then reads commands from stdin: ``stop`` starts ``shutdown()``
(deregisters, waits for requests in flight, closes its sockets) and prints ``stopped`` when it
is done; ``release`` lets every ``slow`` request answer; ``exit`` or end of file ends the
process (after a shutdown, if there was none yet). The test stops the connector first and ends
the process later, so it can check what the shutdown itself did to the router.

asgi-cc runs on asyncio, so it gets an event loop (and a process) of its own rather than a
thread inside the test process.

The app, under ``/<route>/``:

* ``echo/...``: the request body back, with ``X-Echo-Method`` and ``X-Echo-Path`` (the raw
  path and query exactly as the connector handed them to the app);
* ``bytes/N?seed=S``: N deterministic bytes (the same as the test suite's
  ``deterministic_bytes``);
* ``sha256``: reads the body as it comes and answers JSON ``{"length": n, "sha256": hex}``
  (as the test suite's target service does);
* ``cookies``: two ``Set-Cookie`` headers;
* ``slow?seconds=S``: prints ``slow started``, then answers ``slow done`` once released (or
  after S seconds);
* ``endless``: 64 KiB chunks until the router goes away (capped at 512 MiB);
* anything else: 404.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
from typing import Any
from urllib.parse import parse_qs

ENDLESS_CHUNK = 64 * 1024
ENDLESS_CAP = 512 * 1024 * 1024
RELEASE = asyncio.Event()


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the router went away")
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: Any, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    head = [(b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(body)).encode())] + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    raw_path: bytes = scope["raw_path"]
    segments = raw_path.split(b"/")
    endpoint = segments[2] if len(segments) > 2 else b""
    if endpoint == b"echo":
        body = await _body(receive)
        target = raw_path + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        await _answer(send, 200, body, [(b"x-echo-method", scope["method"].encode()),
                                        (b"x-echo-path", target)])
    elif endpoint == b"bytes":
        await _body(receive)
        query = parse_qs(scope["query_string"].decode("ascii"))
        seed = int(query.get("seed", ["0"])[0])
        await _answer(send, 200, random.Random(seed).randbytes(int(segments[3])))
    elif endpoint == b"sha256":
        digest, length = hashlib.sha256(), 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            digest.update(chunk)
            length += len(chunk)
            if not message.get("more_body", False):
                break
        answer = {"length": length, "sha256": digest.hexdigest()}
        await _answer(send, 200, json.dumps(answer).encode())
    elif endpoint == b"cookies":
        await _body(receive)
        await _answer(send, 200, b"cookies\n", [(b"set-cookie", b"a=1; Path=/"),
                                              (b"set-cookie", b"b=2; Path=/; HttpOnly")])
    elif endpoint == b"slow":
        await _body(receive)
        query = parse_qs(scope["query_string"].decode("ascii"))
        print("slow started", flush=True)
        try:
            await asyncio.wait_for(RELEASE.wait(), float(query.get("seconds", ["30"])[0]))
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
            pass
        await _answer(send, 200, b"slow done\n")
    elif endpoint == b"endless":
        await _body(receive)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        chunk = b"e" * ENDLESS_CHUNK
        for _ in range(ENDLESS_CAP // ENDLESS_CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _body(receive)
        await _answer(send, 404, b"asgi app: no such endpoint\n")


async def run(router_url: str, route: str) -> None:
    from asgi_cc import CrankerConnector, CrankerConnectorConfig

    config = CrankerConnectorConfig(router_urls=[router_url], route=route,
                                    component_name="asgi-cc-test", reconnect_delay_seconds=0.2,
                                    deregister_timeout_seconds=10.0)
    connector = CrankerConnector(app, config)
    await connector.startup()
    print("started", flush=True)
    loop = asyncio.get_running_loop()
    stopping: asyncio.Task[None] | None = None

    async def stop() -> None:
        await connector.shutdown()
        print("stopped", flush=True)

    while True:
        raw = await loop.run_in_executor(None, sys.stdin.readline)
        command = raw.strip()
        if command == "stop" and stopping is None:
            stopping = asyncio.create_task(stop())
        elif command == "release":
            RELEASE.set()
        elif raw == "" or command == "exit":
            break
    if stopping is None:
        stopping = asyncio.create_task(stop())
    await stopping


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: run_asgi_cc.py ROUTER_WS_URL ROUTE", file=sys.stderr)
        return 2
    asyncio.run(run(argv[0], argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
