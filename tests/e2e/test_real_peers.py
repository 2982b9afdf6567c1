"""Real Cranker connectors from PyPI, registered at a real crank_sync router.

Each peer runs in a process of its own (a small runner under ``tests/peers/``), so its threads,
event loop and logging set-up never touch the test process; the test drives it through stdin
(``stop``: the connector's own shutdown; end of file: the process ends).

* **crank4py-connector 0.0.5** (Cranker v1, threads on websocket-client) serves the suite's
  ``TargetService``. What it cannot do, and what the router does with it:

  - it declares ``websocket-client==1.1.0`` while crank_sync needs ``>=1.6``, so pip cannot
    install both from one requirement set: ``.ci/run`` installs it with ``--no-deps`` and the
    ``test`` extra declares what it imports (``requests``, ``yarl``, ``six``; ``six`` it
    imports without declaring it). It runs on websocket-client 1.9 as tested here;
  - it folds repeated response headers into one (``dict(response.headers)`` of requests), so
    two ``Set-Cookie`` headers reach the client as one header holding both cookies joined by
    ``", "``: the test asserts exactly that;
  - it buffers a whole request body in memory before it calls the target, so a chunked upload
    reaches the target with a ``Content-Length`` (the body is still byte for byte);
  - its ping thread dies at once (it calls websocket-client 1.1's private ``_send_ping``
    signature) and its socket teardown raises ``AttributeError`` (``Thread.isAlive``, gone
    since Python 3.9), so it never pings and logs a traceback per closed socket; neither
    stops it from serving, and the router still sees each close;
  - its response head has a ``<METHOD> <path>`` line after the status line, which the
    router ignores;
  - it decodes gzip bodies but passes on ``Content-Encoding`` and the compressed length (the
    router aborts the response), follows redirects itself, and never cancels its request to
    the target when the client goes away: the tests at the end show what the router does;
  - it installs top-level packages named ``util``, ``test`` and ``cranker_protocol``.

* **asgi-cc 0.1.5** (Cranker v3 only, asyncio on ``websockets``) serves the small ASGI app in
  ``tests/peers/run_asgi_cc.py``. It sends its response head without a final newline, and on
  shutdown it cancels its socket tasks, so its sockets close with 1011 right after the last
  response (the router used to count that response as aborted and close the client's
  connection: fixed in ``crank_sync/router/v3.py``, and tested with a scripted peer in
  ``test_peer_habits.py``).

Neither peer limits the size of a websocket message below what the router sends (websocket-client
has no limit, ``websockets`` 1 MiB), so the 200 KB POST passes with the router's 64 KiB messages.
"""
from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from support import (
    GZIP_BODY,
    LOOPBACK,
    ResponseReader,
    deterministic_bytes,
    wait_for,
)

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"
ROUTE = "svc"
ENCODED_TARGET = "/svc/echo/a%20b/%2F?q=a%26b&x=%C3%A9"
INSTALL_HINT = {
    "crank4py-connector": "pip install --no-deps 'crank4py-connector==0.0.5' (as .ci/run does)",
    "asgi-cc": "pip install -e '.[test]'",
}
MODULE = {"crank4py-connector": "crank4py_connector", "asgi-cc": "asgi_cc"}
PEERS = ["crank4py-connector", "asgi-cc"]


class PeerProcess:
    """One peer connector in its own process; its output goes to ``log``."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=self._log_file,
            stderr=subprocess.STDOUT, cwd=log.parent, text=True)

    def output(self, tail: int = 4000) -> str:
        """The process's output so far (its last ``tail`` characters, for failure messages)."""
        return self.log.read_text(errors="replace")[-tail:]

    def said(self, word: str) -> bool:
        """The runner printed ``word`` on a line of its own."""
        return word in self.log.read_text(errors="replace").splitlines()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def end(self, timeout: float = 20.0) -> int:
        """End of file on stdin: the runner exits; returns its exit status."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self._log_file.close()


@pytest.fixture
def peer_router(request: pytest.FixtureRequest, router_factory: Any) -> Any:
    """By default a short wait for a socket, so a route without one answers 503 promptly;
    parametrise indirectly with RouterConfig overrides."""
    return router_factory(**getattr(request, "param", {"connector_max_wait": 1.0}))


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest, peer_router: Any, target: Any,
         tmp_path: Path) -> Iterator[PeerProcess]:
    """A registered peer connector on route ``svc`` (two sockets at the router)."""
    name = request.param
    if importlib.util.find_spec(MODULE[name]) is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT[name]}")
    router_url = f"ws://{LOOPBACK}:{peer_router.registration_port}"
    if name == "crank4py-connector":
        args = [str(PEERS_DIR / "run_crank4py.py"), router_url, target.url, ROUTE]
    else:
        args = [str(PEERS_DIR / "run_asgi_cc.py"), router_url, ROUTE]
    proc = PeerProcess(name, args, tmp_path / f"{name}.log")
    try:
        def registered() -> bool:
            assert proc.alive(), f"{name} exited early:\n{proc.output()}"
            return peer_router.idle_sockets(ROUTE) >= 2

        wait_for(registered, timeout=20, what=f"{name} to register two sockets")
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def fetch(peer_router: Any, session: requests.Session) -> Callable[..., requests.Response]:
    def do(method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return session.request(method, f"http://{LOOPBACK}:{peer_router.http_port}{path}",
                               **kwargs)
    return do


def test_get(peer, fetch):
    resp = fetch("GET", "/svc/bytes/5000?seed=3")
    assert resp.status_code == 200, peer.output()
    assert resp.content == deterministic_bytes(5000, 3)
    assert resp.headers["Content-Length"] == "5000"


def test_post_echo_of_200_kb(peer, fetch):
    # Connectors that cap a websocket message (crank4go 16 KiB, Go and JavaScript 32 KiB) fail
    # this while the router sends a body in messages of up to 64 KiB; these two peers do not.
    body = deterministic_bytes(200_000, 7)
    resp = fetch("POST", "/svc/echo", data=body)
    assert resp.status_code == 200, peer.output()
    assert len(resp.content) == len(body)
    assert resp.content == body


def test_chunked_upload(peer, peer_router, target):
    parts = [b"first part\n", deterministic_bytes(50_000, 8), b"x" * 70_000, b"last\n"]
    expected = b"".join(parts)
    client = http.client.HTTPConnection(LOOPBACK, peer_router.http_port, timeout=30)
    try:
        client.putrequest("POST", "/svc/sha256")
        client.putheader("Transfer-Encoding", "chunked")
        client.endheaders()
        for part in parts:
            client.send(b"%x\r\n%s\r\n" % (len(part), part))
        client.send(b"0\r\n\r\n")
        resp = client.getresponse()
        answer = resp.read()
    finally:
        client.close()
    assert resp.status == 200, peer.output()
    assert json.loads(answer) == {"length": len(expected),
                                  "sha256": hashlib.sha256(expected).hexdigest()}
    if peer.name == "crank4py-connector":
        # it buffers the body and hands the target a Content-Length instead of chunks
        (rec,) = target.received_for("/svc/sha256")
        assert rec.header_values("Content-Length") == [str(len(expected))]
        assert not rec.has_header("Transfer-Encoding")


def test_5_mb_download_and_upload(peer, fetch):
    """Far beyond one flow-control window (64 KiB) on v3, and beyond any one message."""
    resp = fetch("GET", "/svc/bytes/5000000?seed=9")
    assert resp.status_code == 200, peer.output()
    assert resp.content == deterministic_bytes(5_000_000, 9)
    body = deterministic_bytes(5_000_000, 10)
    resp = fetch("POST", "/svc/echo", data=body)
    assert resp.status_code == 200, peer.output()
    assert resp.content == body


def test_client_leaving_mid_response_leaves_the_route_serving(peer, peer_router, fetch):
    """The router ends the exchange (v1: close 1001; v3: RST_STREAM) and keeps serving.

    crank4py-connector streams the target's answer on its reader thread, so it only notices
    when its sends fail, and never closes its request to the target (the target keeps
    writing until it is stopped); the router does not depend on either."""
    client = socket.create_connection((LOOPBACK, peer_router.http_port), timeout=30)
    try:
        client.sendall(b"GET /svc/endless HTTP/1.1\r\nHost: peers\r\n\r\n")
        received = 0
        while received < 1_000_000:
            chunk = client.recv(65536)
            assert chunk, f"the response ended after {received} bytes\n{peer.output()}"
            received += len(chunk)
    finally:
        client.close()

    def settled() -> bool:
        groups = peer_router.registry.snapshot().get(ROUTE, {})
        return not groups.get("busy") and peer_router.idle_sockets(ROUTE) >= 2

    wait_for(settled, timeout=20, what="the router to end the exchange, two sockets idle")
    resp = fetch("GET", "/svc/bytes/3000?seed=4")
    assert resp.status_code == 200, peer.output()
    assert resp.content == deterministic_bytes(3000, 4)


# requests queue for the v1 peer's sockets: a long wait, so a busy machine cannot make them 503
@pytest.mark.parametrize("peer_router", [{"connector_max_wait": 10.0}], indirect=True)
def test_concurrent_requests(peer, fetch):
    """v1: each request takes a socket and the peer opens a replacement; v3: streams share
    the peer's two sockets."""
    def one(seed: int) -> tuple[int, bool]:
        resp = fetch("GET", f"/svc/bytes/20000?seed={seed}")
        return resp.status_code, resp.content == deterministic_bytes(20000, seed)

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-peer-client") as pool:
        results = list(pool.map(one, range(40)))
    assert results == [(200, True)] * 40, peer.output()


def test_request_in_flight_finishes_while_the_peer_shuts_down(peer, peer_router, fetch, target,
                                                               caplog):
    """The peer deregisters with a request in flight: new requests find no socket, the one in
    flight completes, and the client's connection stays open after it."""
    caplog.set_level("WARNING", logger="crank_sync")
    client = socket.create_connection((LOOPBACK, peer_router.http_port), timeout=30)
    try:
        client.sendall(b"GET /svc/slow?seconds=30 HTTP/1.1\r\nHost: peers\r\n\r\n")
        if peer.name == "crank4py-connector":
            wait_for(lambda: target.received_for("/svc/slow"), what="the slow request")
        else:
            wait_for(lambda: peer.said("slow started"), what="the slow request")
        peer.command("stop")
        wait_for(lambda: peer_router.idle_sockets(ROUTE) == 0, timeout=20,
                 what="the deregistration to take the idle sockets")
        assert fetch("GET", "/svc/bytes/10").status_code in (503, 404)
        if peer.name == "crank4py-connector":
            target.release.set()
        else:
            peer.command("release")
        reader = ResponseReader(client)
        resp = reader.next()
        assert resp.status == 200, peer.output()
        assert resp.read() == b"slow done\n"
        wait_for(lambda: peer.said("stopped"), timeout=30, what=f"{peer.name} to stop")

        def no_sockets() -> bool:
            groups = peer_router.registry.snapshot().get(ROUTE, {})
            return not any(groups.values())

        wait_for(no_sockets, timeout=20, what="the router to close the drained socket")
        client.sendall(b"GET /svc/bytes/10 HTTP/1.1\r\nHost: peers\r\n\r\n")
        assert reader.next().status in (503, 404)  # on the same client connection
    finally:
        client.close()
    assert [r.getMessage() for r in caplog.records if "aborted" in r.getMessage()] == []
    assert peer.end() == 0, peer.output()


def test_two_set_cookie_headers(peer, fetch):
    resp = fetch("GET", "/svc/cookies")
    assert resp.status_code == 200, peer.output()
    cookies = resp.raw.headers.getlist("Set-Cookie")
    if peer.name == "crank4py-connector":
        # the peer folds the two headers into one (see the module docstring)
        assert cookies == ["a=1; Path=/, b=2; Path=/; HttpOnly"]
    else:
        assert cookies == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]


def test_encoded_path_and_query_reach_the_service_byte_for_byte(peer, fetch, target):
    resp = fetch("GET", ENCODED_TARGET)
    assert resp.status_code == 200, peer.output()
    assert resp.headers["X-Echo-Path"] == ENCODED_TARGET
    assert resp.headers["X-Echo-Method"] == "GET"
    if peer.name == "crank4py-connector":
        assert [r.path for r in target.received_for("/svc/echo")] == [ENCODED_TARGET]


def test_404_from_the_service(peer, fetch):
    resp = fetch("GET", "/svc/no-such-endpoint")
    assert resp.status_code == 404, peer.output()
    assert b"no such endpoint" in resp.content


@pytest.mark.parametrize("how", ["shutdown", "killed"])
def test_route_answers_503_or_404_once_the_peer_stops(peer, peer_router, fetch, how):
    assert fetch("GET", "/svc/bytes/10").status_code == 200, peer.output()
    if how == "shutdown":
        # the peer's own shutdown deregisters: the router drops its sockets while the
        # process still runs
        peer.command("stop")
        wait_for(lambda: peer.said("stopped"), timeout=30, what=f"{peer.name} to stop")
        wait_for(lambda: peer_router.idle_sockets(ROUTE) == 0, timeout=20,
                 what="the router to drop the deregistered sockets")
        assert peer.alive(), peer.output()
    else:
        peer.kill()
        wait_for(lambda: peer_router.idle_sockets(ROUTE) == 0, timeout=20,
                 what="the router to drop the dead peer's sockets")
    resp = fetch("GET", "/svc/bytes/10", timeout=30)
    assert resp.status_code in (503, 404), (resp.status_code, resp.text)
    if how == "shutdown":
        assert peer.end() == 0, peer.output()


# --------------------------------------------------------------------------- crank4py's limits


@pytest.mark.parametrize("peer", ["crank4py-connector"], indirect=True)
def test_crank4py_decodes_gzip_but_keeps_its_length_and_the_router_aborts(peer, peer_router):
    """crank4py-connector reads the target with requests' ``iter_content``, which undoes
    ``Content-Encoding: gzip``, yet it passes on the encoding and the compressed
    ``Content-Length``. The router refuses to send a body longer than its Content-Length: the
    client gets the head and then the connection closes (no hang, no mislabelled body)."""
    client = socket.create_connection((LOOPBACK, peer_router.http_port), timeout=30)
    try:
        client.sendall(b"GET /svc/gzip HTTP/1.1\r\nHost: peers\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError(f"the router kept the connection open: {data[:300]!r}")
    finally:
        client.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), head
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert fields["content-encoding"] == "gzip"
    assert fields["content-length"] == str(len(GZIP_BODY))
    assert len(body) < len(GZIP_BODY)


@pytest.mark.parametrize("peer", ["crank4py-connector"], indirect=True)
def test_crank4py_follows_redirects_itself(peer, fetch, target):
    """crank4py-connector calls the target with requests' default ``allow_redirects=True``: the
    client never sees the target's 302, it gets what the redirect points at."""
    resp = fetch("GET", "/svc/redirect", allow_redirects=False)
    assert resp.status_code == 200, peer.output()
    assert resp.content == deterministic_bytes(1, 0)
    assert [r.path for r in target.received] == ["/svc/redirect", "/svc/bytes/1"]
