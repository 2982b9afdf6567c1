"""The real HTTP target service behind the connectors: a stdlib ``ThreadingHTTPServer`` on
127.0.0.1 port 0 with scripted endpoints under ``/<route>/<endpoint>/...`` (bytes, echo,
chunked, slow, endless, die-mid-body, ...), recording every request it received."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .data import deterministic_bytes, sha256
from .sockets import LOOPBACK

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
        #: Body bytes the latest endless download has written so far.
        self.endless_sent = 0
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
        sent = self.server.endless_sent = 0
        try:
            while sent < ENDLESS_CAP and not self.server.release.is_set():
                self.wfile.write(framed)
                sent += len(chunk)
                self.server.endless_sent = sent
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
    def endless_sent(self) -> int:
        return self.server.endless_sent

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
