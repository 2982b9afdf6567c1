"""The router's v3 side against scripted connectors that speak raw v3 frames.

Each fake is a websocket-client connection registered with ``Sec-WebSocket-Protocol:
cranker_3.0``. A reader thread decodes every binary message with ``crank_sync.protocol.v3`` and
queues it; the test takes the frames it expects (with deadlines) and writes frames built with
the same module.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import websocket
from support import LOOPBACK, admin_url, client_url, deterministic_bytes, wait_for
from websocket import ABNF

from crank_sync.protocol import v3

# --------------------------------------------------------------------------- the fake connector


class FakeV3Connector:
    """A scripted v3 connector: frames in via a reader thread, frames out on demand."""

    def __init__(
        self,
        router: Any,
        route: str,
        instance_id: str = "fake-v3",
        extra_headers: tuple[str, ...] = (),
    ) -> None:
        self.router = router
        self.route = route
        self.instance_id = instance_id
        self.ws = websocket.create_connection(
            f"ws://{LOOPBACK}:{router.registration_port}/register/"
            f"?connectorInstanceID={instance_id}&componentName=fake-v3",
            header=[f"Route: {route}", "Sec-WebSocket-Protocol: cranker_3.0", *extra_headers],
            timeout=10,
            enable_multithread=True,
        )
        headers = {k.lower(): v for k, v in (self.ws.getheaders() or {}).items()}
        assert headers.get("sec-websocket-protocol") == "cranker_3.0", headers
        self._cond = threading.Condition()
        self._pending: list[v3.Frame] = []
        #: Everything received, in order: frames and ("close", code).
        self.events: list[Any] = []
        self.data_bytes: dict[int, int] = defaultdict(int)
        self.close_code: int | None = None
        self.ended = False
        self._reader = threading.Thread(target=self._read, name="test-fake-v3-reader", daemon=True)
        self._reader.start()

    # -- reading -------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                try:
                    opcode, frame = self.ws.recv_data_frame(True)
                except websocket.WebSocketTimeoutException:
                    continue
                if opcode == ABNF.OPCODE_CLOSE:
                    data = frame.data
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    with self._cond:
                        self.close_code = code
                        self.events.append(("close", code))
                        self._cond.notify_all()
                    return
                if opcode != ABNF.OPCODE_BINARY:
                    continue
                decoded = v3.decode(frame.data)
                with self._cond:
                    self._pending.append(decoded)
                    self.events.append(decoded)
                    if decoded.type == v3.DATA:
                        self.data_bytes[decoded.stream_id] += len(decoded.payload)
                    self._cond.notify_all()
        except Exception:  # noqa: BLE001 - socket gone: the test sees ``ended``
            pass
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def take(
        self, predicate: Callable[[v3.Frame], bool], timeout: float = 10.0, what: str = "frame"
    ) -> v3.Frame:
        """Remove and return the first received frame matching ``predicate``."""

        def find() -> v3.Frame | None:
            for frame in self._pending:
                if predicate(frame):
                    return frame
            return None

        with self._cond:
            found = self._cond.wait_for(lambda: find() is not None or self.ended, timeout)
            frame = find()
            if not found or frame is None:
                raise AssertionError(
                    f"fake connector: no {what} within {timeout}s "
                    f"(ended={self.ended}, close={self.close_code})"
                )
            self._pending.remove(frame)
            return frame

    def recv_request(self, timeout: float = 10.0) -> tuple[int, str, list[v3.Frame]]:
        """The next request head: (stream id, header text, its HEADER frames)."""
        first = self.take(lambda f: f.type == v3.HEADER, timeout, "request HEADER")
        frames = [first]
        while not frames[-1].end_header:
            frames.append(
                self.take(
                    lambda f: f.type == v3.HEADER and f.stream_id == first.stream_id,
                    timeout,
                    "continuation HEADER",
                )
            )
        text = b"".join(f.payload for f in frames).decode("utf-8")
        return first.stream_id, text, frames

    def recv_body(self, stream_id: int, timeout: float = 10.0) -> bytes:
        body = b""
        while True:
            frame = self.take(
                lambda f: f.type == v3.DATA and f.stream_id == stream_id,
                timeout,
                f"DATA of stream {stream_id}",
            )
            body += frame.payload
            if frame.end_stream:
                return body

    def wait_close(self, timeout: float = 10.0) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.close_code is not None or self.ended, timeout)
            assert self.close_code is not None, "router did not close the fake v3 socket"
            return self.close_code

    # -- writing -------------------------------------------------------------------------

    def send(self, message: bytes) -> None:
        self.ws.send_binary(message)

    def send_head(
        self,
        stream_id: int,
        status: int = 200,
        reason: str = "OK",
        headers: tuple[tuple[str, str], ...] = (),
        end_stream: bool = False,
    ) -> None:
        text = f"HTTP/1.1 {status} {reason}\n" + "".join(f"{n}:{v}\n" for n, v in headers)
        for frame in v3.header_frames(stream_id, text, end_stream=end_stream):
            self.send(frame)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.send(v3.data_frame(stream_id, data, end_stream=end_stream))

    def respond(self, stream_id: int, body: bytes, chunk: int = 8192) -> None:
        """A complete response small enough (< 64 KiB) to need no WINDOW_UPDATE."""
        self.send_head(stream_id, headers=(("Content-Length", str(len(body))),))
        for i in range(0, len(body), chunk):
            self.send_data(stream_id, body[i : i + chunk])
        self.send_data(stream_id, b"", end_stream=True)

    def close(self, code: int) -> None:
        """Send a close frame; the reader thread sees the router's reply."""
        self.ws.send_close(code, b"fake closing")

    def abort(self) -> None:
        sock = self.ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.ws.shutdown()
        except Exception:  # noqa: BLE001
            pass
        self._reader.join(10)


@pytest.fixture
def fake_v3(router) -> Iterator[Callable[..., FakeV3Connector]]:
    fakes: list[FakeV3Connector] = []

    def make(route: str, **kwargs: Any) -> FakeV3Connector:
        before = router.idle_sockets(route)
        fake = FakeV3Connector(router, route, **kwargs)
        fakes.append(fake)
        wait_for(
            lambda: router.idle_sockets(route) >= before + 1,
            what=f"fake v3 socket registered on {route!r}",
        )
        return fake

    yield make
    for fake in fakes:
        fake.abort()


# --------------------------------------------------------------------------- clients


class BackgroundRequest:
    """A client request on its own thread, so the test can drive the fake connector."""

    def __init__(self, router: Any, method: str, path: str, **kwargs: Any) -> None:
        self.result: dict[str, Any] = {}
        self._thread = threading.Thread(
            target=self._run, args=(router, method, path, kwargs), name="test-background-request"
        )
        self._thread.start()

    def _run(self, router: Any, method: str, path: str, kwargs: dict) -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                self.result["resp"] = s.request(method, client_url(router, path), timeout=30,
                                                **kwargs)
        except Exception as err:  # noqa: BLE001 - the test inspects it
            self.result["error"] = err

    def response(self, timeout: float = 30) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "client request did not finish"
        assert "resp" in self.result, f"client request failed: {self.result.get('error')!r}"
        return self.result["resp"]


def raw_get(router: Any, path: str) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode())
    return sock


def serves(router: Any, fake: FakeV3Connector, path: str, seed: int) -> None:
    """One request through ``fake`` succeeds: the socket still works."""
    body = deterministic_bytes(3000, seed)
    client = BackgroundRequest(router, "GET", path)
    sid, text, frames = fake.recv_request()
    assert text.startswith(f"GET {path} HTTP/1.1\n")
    assert text.endswith("\n\n")  # v1 text without a marker
    assert frames[-1].flags == v3.END_HEADER | v3.END_STREAM  # no body
    fake.respond(sid, body)
    resp = client.response()
    assert resp.status_code == 200
    assert resp.content == body


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("router", [{"idle_timeout": 3.0}], indirect=True)
def test_unacknowledged_request_body_stalls_only_its_stream(
    router, target, connector_factory, fake_v3
):
    connector_factory(target, route="svc", protocols=("3.0",))
    fake = fake_v3("stall")
    body_size = 2 * 1024 * 1024
    outcome: dict[str, Any] = {}

    def upload() -> None:
        sock = socket.create_connection((LOOPBACK, router.http_port), timeout=20)
        try:
            try:
                sock.sendall(
                    b"POST /stall/up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_size
                    + b"u" * body_size
                )
            except OSError as err:
                outcome["send_error"] = err
            resp = http.client.HTTPResponse(sock, method="POST")
            resp.begin()
            outcome["status"] = resp.status
        except OSError as err:
            outcome["error"] = err
        finally:
            sock.close()

    uploader = threading.Thread(target=upload, name="test-stalled-upload")
    uploader.start()
    try:
        sid, text, frames = fake.recv_request()
        assert text.startswith("POST /stall/up HTTP/1.1\n")
        assert frames[-1].flags == v3.END_HEADER  # a body follows
        header_bytes = sum(len(f.payload) for f in frames)
        # the router may send until more than 64 KiB (header included) is unacknowledged
        wait_for(
            lambda: header_bytes + fake.data_bytes[sid] > v3.HIGH_WATER,
            what="the first 64 KiB of the request body",
        )
        # a second stream on the same socket, and another route, are not held up
        second = BackgroundRequest(router, "GET", "/stall/other")
        sid2, text2, _ = fake.recv_request()
        assert sid2 != sid and text2.startswith("GET /stall/other HTTP/1.1\n")
        fake.respond(sid2, b"second stream works")
        assert second.response().content == b"second stream works"
        with requests.Session() as s:
            s.trust_env = False
            for i in range(5):
                resp = s.get(client_url(router, f"/svc/bytes/2000?seed={i}"), timeout=10)
                assert resp.status_code == 200
                assert resp.content == deterministic_bytes(2000, i)
        # never a WINDOW_UPDATE from us: at most the window plus one chunk arrived
        assert fake.data_bytes[sid] <= 64 * 1024 + 64 * 1024
        # without WINDOW_UPDATE the router gives up on that stream (504) and resets it
        rst = fake.take(
            lambda f: f.type == v3.RST_STREAM and f.stream_id == sid,
            timeout=20,
            what="RST_STREAM of the stalled stream",
        )
        assert rst.rst_code()[0] == v3.RST_CLIENT_GONE
    finally:
        uploader.join(30)
    assert not uploader.is_alive()
    assert fake.data_bytes[sid] <= 64 * 1024 + 64 * 1024
    assert outcome.get("status", 504) == 504, outcome
    assert fake.close_code is None and router.idle_sockets("stall") == 1


def test_request_body_flows_while_acknowledged(router, fake_v3):
    fake = fake_v3("upload")
    payload = deterministic_bytes(300_000, 13)
    client = BackgroundRequest(router, "POST", "/upload/x", data=payload)
    sid, text, frames = fake.recv_request()
    assert text.startswith("POST /upload/x HTTP/1.1\n") and text.endswith("\n\n")
    assert frames[-1].flags == v3.END_HEADER  # a body follows
    fake.send(v3.window_update_frame(sid, sum(len(f.payload) for f in frames)))
    body = b""
    while True:
        frame = fake.take(lambda f: f.type == v3.DATA and f.stream_id == sid, what="request DATA")
        body += frame.payload
        if frame.end_stream:
            assert frame.payload == b"" and frame.flags == v3.END_STREAM
            break
        fake.send(v3.window_update_frame(sid, len(frame.payload)))
    assert body == payload
    fake.respond(sid, b"uploaded")
    resp = client.response()
    assert resp.status_code == 200 and resp.content == b"uploaded"


def test_rst_before_response_is_502(router, fake_v3):
    fake = fake_v3("rst")
    client = BackgroundRequest(router, "GET", "/rst/x")
    sid, _, _ = fake.recv_request()
    fake.send(v3.rst_frame(sid, v3.RST_TARGET_FAILED, "target failed"))
    assert client.response().status_code == 502
    serves(router, fake, "/rst/after", 1)


def test_rst_after_response_head_aborts_client(router, fake_v3):
    fake = fake_v3("rst")
    sock = raw_get(router, "/rst/y")
    try:
        sid, _, _ = fake.recv_request()
        fake.send_head(sid, headers=(("Content-Length", "100000"),))
        fake.send_data(sid, b"r" * 5000)
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read(5000) == b"r" * 5000
        fake.send(v3.rst_frame(sid, v3.RST_TARGET_FAILED, "target failed mid-body"))
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        sock.close()
    serves(router, fake, "/rst/after", 2)


def test_frames_for_unknown_stream_ids_are_ignored(router, fake_v3):
    fake = fake_v3("unknown")
    for stream_id in (999, 12345):
        fake.send(v3.data_frame(stream_id, b"stray", end_stream=True))
        fake.send(v3.header_frames(stream_id, "HTTP/1.1 200 OK\n", end_stream=True)[0])
        fake.send(v3.window_update_frame(stream_id, 4096))
        fake.send(v3.rst_frame(stream_id, 1011, "stray"))
    body = deterministic_bytes(4000, 9)
    client = BackgroundRequest(router, "GET", "/unknown/x")
    sid, _, _ = fake.recv_request()
    fake.send_head(sid, headers=(("Content-Length", str(len(body))),))
    fake.send(v3.data_frame(sid + 500, b"not yours"))  # mid-stream, another unknown id
    fake.send(v3.rst_frame(sid + 501, 1011, "not yours"))
    fake.send_data(sid, body, end_stream=True)
    resp = client.response()
    assert resp.status_code == 200 and resp.content == body
    assert fake.close_code is None and router.idle_sockets("unknown") == 1
    serves(router, fake, "/unknown/after", 3)


def test_text_messages_on_v3_socket_are_ignored(router, fake_v3):
    fake = fake_v3("text")
    fake.ws.send("hello router")
    fake.ws.send("HTTP/1.1 500 Internal Server Error\n")
    client = BackgroundRequest(router, "GET", "/text/x")
    sid, _, _ = fake.recv_request()
    fake.ws.send("_3")
    fake.send_head(sid, headers=(("Content-Length", "2"),))
    fake.ws.send("more text")
    fake.send_data(sid, b"ok", end_stream=True)
    resp = client.response()
    assert resp.status_code == 200 and resp.content == b"ok"
    assert fake.close_code is None
    serves(router, fake, "/text/after", 4)


def test_interleaved_streams_answered_in_reverse_order(router, fake_v3):
    fake = fake_v3("mux")
    bodies = {"/mux/a": deterministic_bytes(40_000, 21), "/mux/b": deterministic_bytes(45_000, 22)}
    clients = {path: BackgroundRequest(router, "GET", path) for path in bodies}
    streams = {}
    for _ in range(2):
        sid, text, _ = fake.recv_request()
        streams[text.split(" ")[1]] = sid
    assert sorted(streams.values()) == [1, 2]  # ids are per socket, from 1
    later, earlier = sorted(streams.items(), key=lambda item: item[1], reverse=True)
    order = [later, earlier]  # reverse order of arrival
    for path, sid in order:
        fake.send_head(sid, headers=(("Content-Length", str(len(bodies[path]))),))
    chunk = 5000
    for offset in range(0, 45_000, chunk):
        for path, sid in order:
            piece = bodies[path][offset : offset + chunk]
            if piece:
                fake.send_data(sid, piece)
    for _path, sid in order:
        fake.send_data(sid, b"", end_stream=True)
    for path, client in clients.items():
        resp = client.response()
        assert resp.status_code == 200, path
        assert resp.content == bodies[path], path


def test_response_header_split_over_three_frames(router, fake_v3):
    fake = fake_v3("split")
    long_value = deterministic_bytes(15_000, 5).hex()  # 30,000 characters
    client = BackgroundRequest(router, "GET", "/split/x")
    sid, _, _ = fake.recv_request()
    text = f"HTTP/1.1 201 Created\nX-Long:{long_value}\nContent-Length:5\n"
    cuts = [0, 10, 20_000, len(text)]
    for i in range(3):
        flags = v3.END_HEADER if i == 2 else 0
        fake.send(
            bytes([v3.HEADER, flags])
            + sid.to_bytes(4, "big")
            + text[cuts[i] : cuts[i + 1]].encode()
        )
    fake.send_data(sid, b"hello", end_stream=True)
    resp = client.response()
    assert resp.status_code == 201
    assert resp.headers["X-Long"] == long_value
    assert resp.content == b"hello"


def test_end_stream_on_response_header_completes_response(router, fake_v3):
    fake = fake_v3("headonly")
    client = BackgroundRequest(router, "GET", "/headonly/x")
    sid, _, _ = fake.recv_request()
    fake.send_head(sid, 204, "No Content", (("X-Only", "head"),), end_stream=True)
    resp = client.response()
    assert resp.status_code == 204
    assert resp.headers["X-Only"] == "head"
    serves(router, fake, "/headonly/after", 6)


def test_long_request_header_is_split_over_header_frames(router, fake_v3):
    fake = fake_v3("longhead")
    value = deterministic_bytes(20_000, 8).hex()  # 40,000 characters
    client = BackgroundRequest(router, "GET", "/longhead/x", headers={"X-Long": value})
    sid, text, frames = fake.recv_request()
    assert len(frames) >= 3
    assert all(not f.end_header for f in frames[:-1])
    assert frames[-1].flags == v3.END_HEADER | v3.END_STREAM  # no body
    assert all(len(f.payload.decode()) <= v3.MAX_HEADER_CHARS for f in frames)
    assert f"X-Long:{value}\n" in text
    fake.respond(sid, b"long ok")
    assert client.response().content == b"long ok"


def test_router_acknowledges_every_header_and_data_frame(router, fake_v3):
    fake = fake_v3("ack")
    client = BackgroundRequest(router, "GET", "/ack/x")
    sid, _, _ = fake.recv_request()
    text = "HTTP/1.1 200 OK\nContent-Type:application/octet-stream\nContent-Length:3345\n"
    head_parts = [text[:17], text[17:]]
    fake.send(bytes([v3.HEADER, 0]) + sid.to_bytes(4, "big") + head_parts[0].encode())
    fake.send(bytes([v3.HEADER, v3.END_HEADER]) + sid.to_bytes(4, "big") + head_parts[1].encode())
    fake.send_data(sid, b"a" * 1000)
    fake.send_data(sid, b"b" * 2345)
    fake.send_data(sid, b"", end_stream=True)
    resp = client.response()
    assert resp.status_code == 200 and resp.content == b"a" * 1000 + b"b" * 2345
    expected = [len(head_parts[0]), len(head_parts[1]), 1000, 2345]
    updates = []
    while sum(updates) < sum(expected):
        frame = fake.take(lambda f: f.type == v3.WINDOW_UPDATE, what="WINDOW_UPDATE")
        assert frame.stream_id == sid and frame.flags == 0
        updates.append(frame.window_increment())
    assert updates == expected


def test_router_resets_stream_with_code_1_when_client_leaves(router, fake_v3):
    fake = fake_v3("leave")
    sock = raw_get(router, "/leave/x")
    try:
        sid, _, _ = fake.recv_request()
        fake.send_head(sid, headers=(("Content-Type", "application/octet-stream"),))
        fake.send_data(sid, b"s" * 16384)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    # the router notices when it next writes to the client: keep the stream flowing
    seen: list[v3.Frame] = []

    def reset_seen() -> bool:
        try:
            fake.send_data(sid, b"s" * 16384)
        except Exception:  # noqa: BLE001 - the router may be gone from this socket
            pass
        try:
            seen.append(fake.take(lambda f: f.type == v3.RST_STREAM, timeout=0.05))
        except AssertionError:
            return False
        return True

    wait_for(reset_seen, what="RST_STREAM from the router")
    assert seen[0].stream_id == sid
    assert seen[0].rst_code()[0] == v3.RST_CLIENT_GONE == 1
    assert fake.close_code is None and router.idle_sockets("leave") == 1
    serves(router, fake, "/leave/after", 7)


def test_socket_closed_with_1011_fails_its_streams(router, fake_v3):
    fake = fake_v3("crash")
    started = raw_get(router, "/crash/started")
    try:
        sid_a, text_a, _ = fake.recv_request()
        assert text_a.startswith("GET /crash/started ")
        waiting = BackgroundRequest(router, "GET", "/crash/waiting")
        sid_b, text_b, _ = fake.recv_request()
        assert text_b.startswith("GET /crash/waiting ")
        fake.send_head(sid_a, headers=(("Content-Length", "50000"),))
        fake.send_data(sid_a, b"c" * 1000)
        resp = http.client.HTTPResponse(started, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read(1000) == b"c" * 1000
        fake.close(1011)
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        started.close()
    assert waiting.response().status_code == 502
    assert fake.wait_close() == 1011  # the router echoed our close


def test_deregistration_closes_v3_socket_after_in_flight_stream(router, fake_v3):
    fake = fake_v3("dereg", instance_id="fake-dereg")
    client = BackgroundRequest(router, "GET", "/dereg/x")
    sid, _, _ = fake.recv_request()

    dereg = websocket.create_connection(
        f"ws://{LOOPBACK}:{router.registration_port}/deregister/"
        "?connectorInstanceID=fake-dereg&componentName=fake-v3",
        header=["Route: dereg", "Sec-WebSocket-Protocol: cranker_3.0"],
        timeout=10,
    )
    try:
        opcode, frame = dereg.recv_data_frame(True)
        assert opcode == ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1000
    finally:
        dereg.shutdown()
    # deregistration is complete, yet the socket stays open while the stream is in flight
    assert router.idle_sockets("dereg") == 0
    assert fake.close_code is None
    body = deterministic_bytes(6000, 12)
    fake.respond(sid, body, chunk=2000)
    resp = client.response()
    assert resp.status_code == 200 and resp.content == body
    assert fake.wait_close() == 1001
    close_at = fake.events.index(("close", 1001))
    acked = sum(
        e.window_increment()
        for e in fake.events[:close_at]
        if isinstance(e, v3.Frame)
        and e.type == v3.WINDOW_UPDATE
        and e.payload
        and e.stream_id == sid
    )
    assert acked >= len(body), "socket closed before the stream's DATA was acknowledged"


def _ack_of(fake: FakeV3Connector, sid: int) -> int:
    frame = fake.take(lambda f: f.type == v3.WINDOW_UPDATE and f.stream_id == sid,
                      what=f"WINDOW_UPDATE of stream {sid}")
    return frame.window_increment()


def test_data_written_while_the_client_waits_is_acknowledged_in_order(router, fake_v3):
    # each DATA arrives while the client's thread waits with nothing queued: the reader thread
    # writes it to the client itself, and acknowledges it
    fake = fake_v3("direct")
    pieces = [deterministic_bytes(20000 + i, i) for i in range(8)]
    body = b"".join(pieces)
    client = BackgroundRequest(router, "GET", "/direct/x")
    sid, _, _ = fake.recv_request()
    fake.send_head(sid, headers=(("Content-Length", str(len(body))),))
    assert _ack_of(fake, sid) > 0  # the HEADER
    for piece in pieces:
        fake.send_data(sid, piece)
        assert _ack_of(fake, sid) == len(piece)
    fake.send_data(sid, b"", end_stream=True)
    resp = client.response()
    assert resp.status_code == 200
    assert resp.content == body
    serves(router, fake, "/direct/after", 4)


def test_data_beyond_the_content_length_resets_the_stream(router, fake_v3):
    fake = fake_v3("overrun")
    sock = raw_get(router, "/overrun/x")
    try:
        sid, _, _ = fake.recv_request()
        fake.send_head(sid, headers=(("Content-Length", "10"),))
        assert _ack_of(fake, sid) > 0
        fake.send_data(sid, b"0123456789")
        assert _ack_of(fake, sid) == 10
        fake.send_data(sid, b"and more than promised")
        rst = fake.take(lambda f: f.type == v3.RST_STREAM, what="RST_STREAM")
        assert rst.stream_id == sid
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        assert resp.status == 200
        assert resp.read() == b"0123456789"
        sock.settimeout(10)
        assert sock.recv(1) == b""  # dropped, not kept alive after a broken response
    finally:
        sock.close()
    serves(router, fake, "/overrun/after", 5)


def test_a_stream_that_ignores_flow_control_is_reset_once_with_1002(router, fake_v3):
    """DATA far past the window, to a client that reads nothing: one RST_STREAM, 1002. The
    client's thread, which gives up on the exchange too, sends no reset of its own."""
    fake = fake_v3("flood")
    sock = raw_get(router, "/flood/x")
    try:
        sid, _, _ = fake.recv_request()
        fake.send_head(sid, headers=(("Content-Type", "application/octet-stream"),))
        chunk = b"f" * 65536
        for _ in range(256):  # 16 MiB, four times the router's per-stream limit
            fake.send_data(sid, chunk)
        rst = fake.take(lambda f: f.type == v3.RST_STREAM, what="RST_STREAM")
        assert rst.stream_id == sid and rst.rst_code()[0] == v3.RST_PROTOCOL_ERROR == 1002
    finally:
        sock.close()  # the client's thread, blocked writing to it, gives up too

    def aborted() -> bool:
        with requests.Session() as s:
            s.trust_env = False
            text = s.get(admin_url(router, "/metrics"), timeout=10).text
        return 'crank_requests_total{route="flood",status_class="aborted"} 1.0' in text

    # the client's thread has ended the exchange: a reset of its own would be out by now
    wait_for(aborted, what="the flooded request counted as aborted")
    serves(router, fake, "/flood/after", 9)  # frames sent before this answer arrived first
    resets = [f for f in fake.events
              if isinstance(f, v3.Frame) and f.type == v3.RST_STREAM and f.stream_id == sid]
    assert [f.rst_code()[0] for f in resets] == [1002]
