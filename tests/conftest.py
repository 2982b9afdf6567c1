"""Shared fixtures for the crank_sync test suite.

The end-to-end tests run a real router, real connectors and a real stdlib HTTP service, all on
127.0.0.1 with port 0. Everything a fixture starts is stopped in its teardown, even when the test
fails, and an autouse check fails any test that leaves a ``crank-*`` thread running.

Synchronisation is always "poll a condition with a deadline" (:func:`wait_for`), never a bare
``sleep()``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import http.server
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import settings

DEFAULT_TIMEOUT_SECONDS = 60
LOOPBACK = "127.0.0.1"

# Property tests (hypothesis) run a bounded, fixed budget: under CI (``CI`` set) the examples
# are derived from the test itself, so every run checks the same inputs and none writes an
# example database into the checkout.
settings.register_profile("crank", max_examples=200, deadline=None)
settings.register_profile("crank-ci", max_examples=200, deadline=None, derandomize=True,
                          database=None, print_blob=True)
settings.load_profile("crank-ci" if os.environ.get("CI") else "crank")

# Test modules import the helpers below as ``crank_test_support``: a stable name that does not
# depend on pytest's import mode or on other ``conftest`` modules in sibling directories.
sys.modules.setdefault("crank_test_support", sys.modules[__name__])


# --------------------------------------------------------------------------- generic helpers


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    Raises AssertionError naming ``what`` when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def reference_mask(key: bytes, data: bytes) -> bytes:
    """RFC 6455 masking, byte by byte: the reference the fast implementations are held to."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
             mask: bytes | None = None, length: int | None = None,
             form: str | None = None) -> bytes:
    """One websocket frame built by hand: masked with ``mask`` (unmasked when None).

    ``length`` overrides the length field (the payload is still the bytes given, so the frame
    may claim more than it carries); ``form`` ("7", "16", "64") forces the length encoding,
    otherwise the shortest one is used.
    """
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if form is None:
        form = "7" if n < 126 else "16" if n < 65536 else "64"
    if form == "7":
        head = struct.pack("!BB", first, mask_bit | n)
    elif form == "16":
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + reference_mask(mask, payload)


def deterministic_bytes(size: int, seed: int = 0) -> bytes:
    """``size`` pseudo-random bytes, the same for the same seed (client and target agree)."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def receive_until_closed(ws: Any, timeout: float = 10.0) -> tuple[list[Any], int | None]:
    """Every message a simple-websocket ``ws`` receives until it closes (or ``timeout`` passes
    with nothing), and the close code (None when it did not close)."""
    import simple_websocket

    messages: list[Any] = []
    try:
        while True:
            msg = ws.receive(timeout=timeout)
            if msg is None:
                return messages, None
            messages.append(msg)
    except simple_websocket.ConnectionClosed as closed:
        return messages, closed.reason


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Everything the router sends until it closes the connection: (bytes, closed).

    ``closed`` is False when the connection was still open at the deadline.
    """
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return data, True
    except TimeoutError:
        return data, False


class ScriptedRouter:
    """A router stand-in for connector tests: takes the first registration as a websocket
    (simple-websocket, answering with ``subprotocols``; None echoes none), runs
    ``script(ws, raw_socket)`` on it (kept as ``script``), then closes it and sets ``done``. Later registrations
    (the rest of the connector's window) get 503. ``offered`` holds every registration's
    Sec-WebSocket-Protocol header."""

    def __init__(self, script: Callable[[Any, socket.socket], None],
                 subprotocols: list[str] | None = None, name: str = "scripted-router") -> None:
        import simple_websocket

        self.script = script
        self.offered: list[str] = []
        self.done = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with lock:
                    outer.offered.append(self.headers.get("Sec-WebSocket-Protocol", ""))
                    first = len(outer.offered) == 1
                if not first:
                    self.send_error(503)
                    return
                environ = {"werkzeug.socket": self.connection}
                for name, value in self.headers.items():
                    environ["HTTP_" + name.upper().replace("-", "_")] = value
                ws = simple_websocket.Server.accept(environ, subprotocols=subprotocols)
                try:
                    script(ws, self.connection)
                finally:
                    outer.done.set()
                    ws.close()
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=name)
        self.thread.start()
        self.port = self.server.server_address[1]
        self.url = f"ws://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class ResponseReader:
    """Parses consecutive responses from one socket through one buffered file.

    ``http.client.HTTPResponse(sock)`` makes a new buffered file per response, which may swallow
    the start of the next pipelined response; this shares one.
    """

    class _KeepOpen:
        """The shared file; HTTPResponse closes its file after each body, so ignore close()."""

        def __init__(self, raw: Any) -> None:
            self._raw = raw

        def __getattr__(self, name: str) -> Any:
            return getattr(self._raw, name)

        def close(self) -> None:
            pass

    def __init__(self, sock: socket.socket) -> None:
        self._file = self._KeepOpen(sock.makefile("rb"))

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        return self._file

    def next(self, method: str = "GET") -> http.client.HTTPResponse:
        resp = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp


def raw_exchange(
    port: int, data: bytes, timeout: float = 10.0, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send exact bytes to ``port`` and parse one HTTP response from the same connection.

    Used for requests that ``requests``/``http.client`` would refuse or normalise.
    """
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything; read the answer
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        body = resp.read()
        return resp.status, resp.headers, body
    finally:
        sock.close()


# --------------------------------------------------------------------------- target service


GZIP_PLAIN = b"crank_sync gzip payload " * 200
GZIP_BODY = gzip.compress(GZIP_PLAIN, mtime=0)
CHUNKED_PARTS = [b"first chunk\n", b"second, longer chunk " * 50 + b"\n", b"x" * 10000, b"end\n"]
DIE_MID_BODY_DECLARED = 1_000_000
DIE_MID_BODY_SENT = 20_000
ENDLESS_CHUNK = 64 * 1024
ENDLESS_CAP = 512 * 1024 * 1024


@dataclass
class Received:
    """One request as the target saw it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body_len: int | None = None
    body_sha256: str | None = None

    def header_values(self, name: str) -> list[str]:
        return [v for (n, v) in self.headers if n.lower() == name.lower()]

    def has_header(self, name: str) -> bool:
        return any(n.lower() == name.lower() for (n, _) in self.headers)


class _TargetHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], name: str) -> None:
        super().__init__(addr, _TargetHandler)
        self.name = name
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.endless_aborted = threading.Event()
        self.endless_finished = threading.Event()
        self.long_poll_abandoned = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connectors going away mid-response are expected in these tests


class _TargetHandler(http.server.BaseHTTPRequestHandler):
    """Endpoints live under ``/<route>/<endpoint>/...``; the first segment is ignored."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _TargetHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- request plumbing

    def _record(self) -> Received:
        rec = Received(method=self.command, path=self.path, headers=list(self.headers.items()))
        with self.server.lock:
            self.server.received.append(rec)
        return rec

    def _iter_body(self) -> Iterator[bytes]:
        te = ",".join(self.headers.get_all("Transfer-Encoding") or []).lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 65536))
                    if not chunk:
                        raise ConnectionError("request body truncated")
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline(65537)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    raise ConnectionError("request body truncated")
                remaining -= len(chunk)
                yield chunk

    def _read_body(self, rec: Received) -> bytes:
        body = b"".join(self._iter_body())
        rec.body_len = len(body)
        rec.body_sha256 = sha256(body)
        return body

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/octet-stream",
        extra: tuple[tuple[str, str], ...] = (),
        include_body: bool = True,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Target-Name", self.server.name)
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if include_body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, rec: Received, obj: Any) -> None:
        self._send(200, json.dumps(obj).encode(), "application/json")

    # -- dispatch

    def _dispatch(self) -> None:
        rec = self._record()
        split = urlsplit(self.path)
        segments = split.path.split("/")
        endpoint = segments[2] if len(segments) > 2 else ""
        args = segments[3:]
        query = parse_qs(split.query)
        handler = getattr(self, "_ep_" + endpoint.replace("-", "_"), None)
        if handler is None:
            self._read_body(rec)
            self._send(404, b"target: no such endpoint\n", "text/plain")
            return
        handler(rec, args, query)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _dispatch

    # -- endpoints

    def _ep_bytes(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/bytes/N[?seed=S]``: N deterministic bytes with Content-Length."""
        self._read_body(rec)
        size = int(args[0])
        seed = int(query.get("seed", ["0"])[0])
        self._send(200, deterministic_bytes(size, seed))

    def _ep_chunked(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/chunked``: CHUNKED_PARTS written with Transfer-Encoding: chunked."""
        self._read_body(rec)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        for part in CHUNKED_PARTS:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _ep_echo(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/echo``: the request body back, plus method and raw path in headers."""
        body = self._read_body(rec)
        self._send(
            200,
            body,
            extra=(("X-Echo-Method", self.command), ("X-Echo-Path", self.path)),
        )

    def _ep_headers(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/headers/...``: JSON with method, raw path, headers and body size."""
        body = self._read_body(rec)
        self._json(
            rec,
            {
                "method": self.command,
                "path": self.path,
                "headers": [[n, v] for (n, v) in self.headers.items()],
                "body_len": len(body),
            },
        )

    def _ep_sha256(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/sha256``: streams the request body and answers with its length and digest."""
        digest = hashlib.sha256()
        length = 0
        for chunk in self._iter_body():
            digest.update(chunk)
            length += len(chunk)
        rec.body_len = length
        rec.body_sha256 = digest.hexdigest()
        self._json(rec, {"length": length, "sha256": digest.hexdigest()})

    def _ep_status(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/status/CODE``: 204 and 304 without a body, anything else with a short one."""
        self._read_body(rec)
        code = int(args[0])
        if code in (204, 304):
            self.send_response(code)
            self.send_header("X-Target-Name", self.server.name)
            if code == 304:
                self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        self._send(code, b"status %d\n" % code, "text/plain")

    def _ep_cookies(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/cookies``: two Set-Cookie headers."""
        self._read_body(rec)
        self._send(
            200,
            b"cookies\n",
            "text/plain",
            extra=(("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/; HttpOnly")),
        )

    def _ep_redirect(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/redirect``: 302 to ``/r/bytes/1`` (a proxy must not follow it)."""
        self._read_body(rec)
        self._send(302, b"moved\n", "text/plain", extra=(("Location", "/svc/bytes/1"),))

    def _ep_bigheader(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/bigheader/N``: a response header ``X-Big`` of N characters."""
        self._read_body(rec)
        self._send(200, b"big header\n", "text/plain", extra=(("X-Big", "b" * int(args[0])),))

    def _ep_gzip(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/gzip``: GZIP_BODY with Content-Encoding: gzip."""
        self._read_body(rec)
        self._send(200, GZIP_BODY, "text/plain", extra=(("Content-Encoding", "gzip"),))

    def _ep_slow(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/slow?seconds=S``: answers after S seconds or when the target is released."""
        self._read_body(rec)
        seconds = float(query.get("seconds", ["30"])[0])
        self.server.release.wait(seconds)
        self._send(200, b"slow done\n", "text/plain")

    def _ep_die_mid_body(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/die-mid-body``: promises 1,000,000 bytes, sends fewer, closes the socket."""
        self._read_body(rec)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(DIE_MID_BODY_DECLARED))
        self.end_headers()
        self.wfile.write(b"d" * DIE_MID_BODY_SENT)
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _ep_long_poll(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/long-poll``: a chunked head and one event, then silence until release (at most
        30 s). Sets ``long_poll_abandoned`` when the peer closes its connection meanwhile."""
        self._read_body(rec)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        event = b"data: first\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        self.close_connection = True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.server.release.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                self.server.long_poll_abandoned.set()
                return
        self.wfile.write(b"0\r\n\r\n")

    def _ep_endless(self, rec: Received, args: list[str], query: dict) -> None:
        """``/r/endless``: a chunked body that goes on until the peer goes away or release.

        Sets ``endless_aborted`` when a write fails (the connector cancelled the request).
        """
        self._read_body(rec)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"e" * ENDLESS_CHUNK
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sent = 0
        try:
            while sent < ENDLESS_CAP and not self.server.release.is_set():
                self.wfile.write(framed)
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.server.endless_finished.set()
        except OSError:
            self.server.endless_aborted.set()
            self.close_connection = True


class TargetService:
    """A real ThreadingHTTPServer on 127.0.0.1:0, run on a named thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = _TargetHTTPServer((LOOPBACK, 0), name)
        self.port: int = self.server.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"test-target-{name}",
            daemon=True,
        )
        self._thread.start()

    @property
    def release(self) -> threading.Event:
        return self.server.release

    @property
    def endless_aborted(self) -> threading.Event:
        return self.server.endless_aborted

    @property
    def endless_finished(self) -> threading.Event:
        return self.server.endless_finished

    @property
    def long_poll_abandoned(self) -> threading.Event:
        return self.server.long_poll_abandoned

    @property
    def received(self) -> list[Received]:
        with self.server.lock:
            return list(self.server.received)

    def received_for(self, path_prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(path_prefix)]

    def stop(self) -> None:
        self.server.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
        assert not self._thread.is_alive(), f"target {self.name} serving thread did not stop"


@pytest.fixture
def target_factory() -> Iterator[Callable[..., TargetService]]:
    started: list[TargetService] = []
    counter = iter(range(1, 1000))

    def make(name: str | None = None) -> TargetService:
        svc = TargetService(name or f"target{next(counter)}")
        started.append(svc)
        return svc

    yield make
    for svc in reversed(started):
        svc.stop()


@pytest.fixture
def target(target_factory: Callable[..., TargetService]) -> TargetService:
    return target_factory("target")


# --------------------------------------------------------------------------- router


ROUTER_DEFAULTS: dict[str, Any] = dict(
    host=LOOPBACK,
    http_port=0,
    registration_port=0,
    connector_max_wait=5.0,
    idle_timeout=60.0,
    max_header_bytes=65536,
    ping_interval=20.0,
    via_name="crank_sync",
)


class RouterFactory:
    """Starts routers with test defaults; stops every one it started at teardown."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.stopped: set[int] = set()

    def __call__(self, **overrides: Any) -> Any:
        from crank_sync import Router, RouterConfig

        listeners = overrides.pop("listeners", ())
        cfg = RouterConfig(**{**ROUTER_DEFAULTS, **overrides})
        router = Router(cfg, listeners=listeners)
        self.started.append(router)
        router.start()
        return router

    def stop(self, router: Any, timeout: float | None = None) -> Any:
        """Stop once; ``timeout`` is the drain deadline (the router's default when None)."""
        if id(router) in self.stopped:
            return None
        self.stopped.add(id(router))
        return router.stop() if timeout is None else router.stop(timeout=timeout)

    def stop_all(self) -> None:
        errors = []
        for router in reversed(self.started):
            try:
                self.stop(router)
            except Exception as err:  # keep stopping the others
                errors.append(err)
        if errors:
            raise errors[0]


@pytest.fixture
def router_factory() -> Iterator[RouterFactory]:
    factory = RouterFactory()
    yield factory
    factory.stop_all()


@pytest.fixture
def router(request: pytest.FixtureRequest, router_factory: RouterFactory) -> Any:
    """A started router. Parametrise indirectly with a dict of RouterConfig overrides."""
    overrides = getattr(request, "param", None) or {}
    return router_factory(**overrides)


# --------------------------------------------------------------------------- connector


def route_key(route: str) -> str:
    return route or "*"


class ConnectorFactory:
    """Starts connectors and waits until the router(s) see the full sliding window.

    ``stop(conn, timeout)`` records the stop so teardown does not stop twice; teardown stops the
    rest and asserts that each finished in time.
    """

    def __init__(
        self,
        default_router: Callable[[], Any],
        default_target: Callable[[], Any],
        default_protocols: tuple[str, ...],
    ):
        self._default_router = default_router
        self._default_target = default_target
        self.default_protocols = default_protocols
        self.started: list[Any] = []
        self.stopped: set[int] = set()

    def __call__(
        self,
        target: Any = None,
        route: str = "svc",
        routers: list[Any] | None = None,
        sliding_window: int = 2,
        wait: bool = True,
        **kwargs: Any,
    ) -> Any:
        from crank_sync import Connector

        if self.default_protocols == MIXED and "protocols" not in kwargs:
            # one v1 and one v3 connector on the same route, used as one
            kwargs.pop("protocols", None)
            parts = [self(target, route, routers, sliding_window, wait=False, protocols=p, **kwargs)
                     for p in (V1, ("3.0",))]
            for part in parts:
                self.stopped.add(id(part))  # the pair is stopped as one
            pair = MixedConnector(parts)
            self.started.append(pair)
            if wait:
                for r in routers or [self._default_router()]:
                    wait_for(
                        lambda r=r: r.idle_sockets(route_key(route)) >= 2 * sliding_window,
                        what=f"{2 * sliding_window} idle sockets (v1 + v3) for {route!r}",
                    )
            return pair
        if target is None:
            target = self._default_target()
        target_url = target if isinstance(target, str) else target.url
        if routers is None:
            routers = [self._default_router()]
        # the suite counts sockets by sliding_window: a v3 connector here keeps as many v3
        # sockets (tests of the v3_sockets default pass v3_sockets themselves)
        kwargs.setdefault("v3_sockets", sliding_window)
        conn = Connector(
            target=target_url,
            route=route,
            routers=[f"ws://{LOOPBACK}:{r.registration_port}" for r in routers],
            component_name=kwargs.pop("component_name", f"component-{route_key(route)}"),
            protocols=kwargs.pop("protocols", self.default_protocols),
            sliding_window=sliding_window,
            **kwargs,
        )
        self.started.append(conn)
        conn.start()
        if wait:
            for r in routers:
                wait_for(
                    lambda r=r: r.idle_sockets(route_key(route)) >= sliding_window,
                    what=f"{sliding_window} idle sockets for route {route_key(route)!r}",
                )
            wait_for(
                lambda: conn.idle_count() >= sliding_window * len(routers),
                what="connector idle_count to reach its window",
            )
        return conn

    def stop(self, conn: Any, timeout: float = 10.0) -> bool:
        self.stopped.add(id(conn))
        return conn.stop(timeout=timeout)

    def stop_all(self) -> None:
        results = []
        for conn in reversed(self.started):
            if id(conn) in self.stopped:
                continue
            self.stopped.add(id(conn))
            results.append(conn.stop(timeout=10.0))
        assert all(results), f"connector stop() did not finish in time: {results}"


class MixedConnector:
    """A v1 connector and a v3 connector on the same route, driven as one."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.connector_instance_id = parts[0].connector_instance_id
        self.config = parts[0].config

    def idle_count(self) -> int:
        return sum(p.idle_count() for p in self.parts)

    def busy_count(self) -> int:
        return sum(p.busy_count() for p in self.parts)

    def stop(self, timeout: float = 10.0) -> bool:
        results = [False] * len(self.parts)

        def stop_one(i: int) -> None:
            results[i] = self.parts[i].stop(timeout=timeout)

        threads = [threading.Thread(target=stop_one, args=(i,), name=f"test-stop-{i}")
                   for i in range(len(self.parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 15)
        return all(results)


# Tests that should run over every protocol set-up decorate themselves with this; it overrides
# the ``cranker_protocols`` fixture, which the connector factory uses as its default: v1 only,
# v3 (preferred, as a connector offers it), and a route served by one v1 and one v3 connector.
V1 = ("1.0",)
V3_PREFERRED = ("3.0", "1.0")
MIXED = ("mixed",)
both_protocols = pytest.mark.parametrize("cranker_protocols", [V1, V3_PREFERRED, MIXED],
                                         ids=["v1", "v3", "mixed"])
#: For tests about one connector's own identity or sockets, where a pair makes no sense.
single_protocols = pytest.mark.parametrize("cranker_protocols", [V1, V3_PREFERRED],
                                           ids=["v1", "v3"])


@pytest.fixture
def cranker_protocols() -> tuple[str, ...]:
    """Protocols offered by connectors from ``connector_factory`` unless a test says otherwise."""
    return V1


def registered(router: Any, conn: Any, route: str = "svc", window: int = 2) -> None:
    """Wait until ``router`` has ``window`` idle sockets for ``route`` and ``conn`` as many."""
    wait_for(lambda: router.idle_sockets(route) >= window and conn.idle_count() >= window,
             what=f"{window} registered sockets for {route!r}")


@pytest.fixture
def wss_connectors(
    router_factory: Any, target_factory: Any, cranker_protocols: tuple[str, ...]
) -> Iterator[Callable[..., Any]]:
    """Connectors with explicit router URLs (``wss://``); stopped before routers and targets."""
    from crank_sync import Connector

    started: list[Any] = []

    def make(router_url: str, target_url: str, route: str = "svc", **kwargs: Any) -> Any:
        kwargs.setdefault("protocols", cranker_protocols)
        kwargs.setdefault("v3_sockets", 2)  # the TLS and auth tests wait for two sockets, any kind
        conn = Connector(target=target_url, route=route, routers=[router_url],
                         component_name=f"component-{route}", **kwargs)
        started.append(conn)
        conn.start()
        return conn

    yield make
    results = [conn.stop(timeout=10.0) for conn in reversed(started)]
    assert all(results), f"connector stop() did not finish in time: {results}"


@pytest.fixture
def connector_factory(
    request: pytest.FixtureRequest,
    router_factory: RouterFactory,
    target_factory: Any,
    cranker_protocols: tuple[str, ...],
) -> Iterator[ConnectorFactory]:
    """Depends on the router and target factories so it is torn down before them."""

    def default_router() -> Any:
        return request.getfixturevalue("router")

    def default_target() -> Any:
        return request.getfixturevalue("target")

    factory = ConnectorFactory(default_router, default_target, tuple(cranker_protocols))
    yield factory
    factory.stop_all()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # never route loopback tests through a proxy from the environment
    yield s
    s.close()


# --------------------------------------------------------------------------- fake connector


class FakeConnector:
    """A scripted Cranker v1 connector built on websocket-client (one socket = one request)."""

    def __init__(
        self,
        router: Any,
        route: str | None,
        instance_id: str = "fake",
        component: str = "fake",
        timeout: float = 10.0,
        path: str = "/register/",
        headers: list[str] | None = None,
    ) -> None:
        import websocket

        self._websocket = websocket
        url = (
            f"ws://{LOOPBACK}:{router.registration_port}{path}"
            f"?connectorInstanceID={instance_id}&componentName={component}"
        )
        if headers is None:
            headers = ["CrankerProtocol: 1.0"]
            if route is not None:
                headers.append(f"Route: {route}")
        self.ws = websocket.create_connection(url, header=headers, timeout=timeout)
        self.handshake_headers = {k.lower(): v for k, v in (self.ws.getheaders() or {}).items()}
        self.subprotocol = self.ws.getsubprotocol()

    def _recv_message(self) -> tuple[int, Any]:
        opcode, data = self.ws.recv_data(control_frame=False)
        return opcode, data

    def recv_request(self) -> tuple[str, bytes]:
        """Wait for one request: returns (head text without marker, body bytes)."""
        ABNF = self._websocket.ABNF
        opcode, data = self._recv_message()
        if opcode == ABNF.OPCODE_CLOSE:
            raise AssertionError("router closed the fake socket instead of sending a request")
        assert opcode == ABNF.OPCODE_TEXT, f"expected a text request head, got opcode {opcode}"
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        head, _, marker = text.rpartition("\n")
        assert marker in ("_1", "_2", "_3"), f"request head ends in {marker!r}"
        self.last_marker = marker
        body = b""
        if marker == "_1":
            while True:
                opcode, data = self._recv_message()
                if opcode == ABNF.OPCODE_BINARY:
                    body += data
                    continue
                text = data.decode("utf-8") if isinstance(data, bytes) else data
                assert text == "_3", f"expected end-of-body marker, got {text!r}"
                break
        return head, body

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_head(self, status: int = 200, reason: str = "OK", headers: tuple = ()) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}:{v}" for (n, v) in headers]
        self.ws.send("\n".join(lines) + "\n")

    def send_body(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            self.ws.close(status=code, reason=reason.encode(), timeout=2)
        except Exception:
            self.abort()

    def close_without_code(self) -> None:
        """Send a close frame with an empty payload (the peer sees 1005)."""
        ABNF = self._websocket.ABNF
        try:
            self.ws.send(b"", opcode=ABNF.OPCODE_CLOSE)
            self.ws.sock.settimeout(2)
            try:
                while True:
                    opcode, _ = self.ws.recv_data_frame(control_frame=True)
                    if opcode == ABNF.OPCODE_CLOSE:
                        break
            except Exception:
                pass
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a websocket close."""
        sock = self.ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.ws.shutdown()
        except Exception:
            pass

    def wait_for_close_code(self, timeout: float = 10.0, keep_sending: bytes = b"") -> int:
        """Read until the router closes the socket and return the close code.

        With ``keep_sending``, send that as a body chunk between reads so the router keeps
        writing to its client (which is how it notices that the client went away).
        """
        ws_mod = self._websocket
        deadline = time.monotonic() + timeout
        sending = bool(keep_sending)
        try:
            while time.monotonic() < deadline:
                if sending:
                    self.ws.settimeout(5)
                    try:
                        self.ws.send_binary(keep_sending)
                    except Exception:
                        sending = False  # the router stopped reading; just wait for the close
                self.ws.settimeout(0.05)
                try:
                    opcode, frame = self.ws.recv_data_frame(control_frame=True)
                except ws_mod.WebSocketTimeoutException:
                    continue
                except ws_mod.WebSocketConnectionClosedException as err:
                    raise AssertionError("router dropped the socket without a close frame") from err
                if opcode == ws_mod.ABNF.OPCODE_CLOSE:
                    data = frame.data
                    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
            raise AssertionError("router did not close the fake connector socket in time")
        finally:
            if self.ws.sock is not None:
                self.ws.settimeout(10)


@pytest.fixture
def fake_connector_factory() -> Iterator[Callable[..., FakeConnector]]:
    fakes: list[FakeConnector] = []

    def make(router: Any, route: str | None, wait: bool = True, **kwargs: Any) -> FakeConnector:
        key = route_key(route or "")
        before = router.idle_sockets(key)
        fake = FakeConnector(router, route, **kwargs)
        fakes.append(fake)
        if wait:
            wait_for(
                lambda: router.idle_sockets(key) >= before + 1,
                what=f"fake connector registered on {key!r}",
            )
        return fake

    yield make
    for fake in fakes:
        fake.abort()


# --------------------------------------------------------------------------- thread-leak check


def _crank_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("crank-") and t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_crank_threads() -> Iterator[None]:
    """Autouse, so it is set up first and torn down last: after every other fixture stopped."""
    before = _crank_threads()
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in _crank_threads() if t not in before]

    deadline = time.monotonic() + 10.0
    while leaked() and time.monotonic() < deadline:
        time.sleep(0.02)
    remaining = leaked()
    if remaining:
        names = sorted(t.name for t in remaining)
        pytest.fail(f"crank threads still alive after teardown: {names}")


# --------------------------------------------------------------------------- collection


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test without its own timeout mark a hard limit so a hang fails."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_SECONDS))
