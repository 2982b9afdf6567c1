"""Websocket protocol errors from a connector, end to end against the real router.

The fake connector is a raw TCP socket: it does the v1 websocket upgrade by hand and writes
frames built here with ``struct`` and a reference mask, so the router sees exactly the bytes
under test (websocket-client, used by the other fake connectors, refuses to write most of
them). The router's replies are parsed from the socket as unmasked server frames, each read
with a deadline.

For every broken frame the router must answer with a close frame carrying the RFC 6455 code
(1002 protocol error, 1007 invalid text, 1009 too big), log a warning naming the reason, close
the TCP connection, drop the socket from its pool, and go on serving: a real ``Connector`` on
another route still proxies a request afterwards.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from support import LOOPBACK, deterministic_bytes, wait_for, ws_frame

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 256 * 1024  # the router under test refuses websocket messages above this
# (below the router's per-socket buffer of 512 KiB, so a message of exactly the limit fits)
TIMEOUT = 10.0

# every test here runs against a router with a small websocket message limit
pytestmark = pytest.mark.parametrize(
    "router", [{"max_message_bytes": MAX_MESSAGE}], indirect=True, ids=["max-256KiB"]
)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 masked: bool = True, length: int | None = None) -> bytes:
    """One connector frame, masked with a random key unless ``masked`` is False."""
    return ws_frame(opcode, payload, fin, rsv, os.urandom(4) if masked else None, length)


class RawV1Connector:
    """A v1 connector on a raw socket: hand-made upgrade, hand-made frames."""

    def __init__(self, router: Any, route: str, instance_id: str = "x",
                 component: str = "y") -> None:
        self.route = route
        self.sock = socket.create_connection((LOOPBACK, router.registration_port),
                                             timeout=TIMEOUT)
        self._buf = b""
        self.eof = False
        try:
            self._upgrade(router, instance_id, component)
        except BaseException:
            self.close()
            raise

    def _upgrade(self, router: Any, instance_id: str, component: str) -> None:
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET /register/?connectorInstanceID={instance_id}&componentName={component} "
            f"HTTP/1.1\r\n"
            f"Host: {LOOPBACK}:{router.registration_port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Route: {self.route}\r\n"
            "CrankerProtocol: 1.0\r\n"
            "Sec-WebSocket-Protocol: cranker_1.0\r\n"
            "\r\n"
        ).encode()
        self.sock.sendall(request)
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self._buf:
            self._fill(deadline)
            assert not self.eof, f"router closed during the upgrade: {self._buf!r}"
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), head
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers
        assert headers.get("sec-websocket-protocol") == "cranker_1.0", headers

    # -- reading -------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        """Receive more bytes (sets ``eof`` when the router closed the connection)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out waiting for data from the router")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError("timed out waiting for data from the router") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self._buf += chunk

    def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes] | None:
        """The next server frame as ``(opcode, payload)``; None when the connection ended."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if self.eof:
                assert not self._buf, f"connection ended inside a frame: {self._buf!r}"
                return None
            self._fill(deadline)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        assert first & 0x80, "the router sent a fragmented frame"
        assert not first & 0x70, "the router set reserved bits"
        assert not second & 0x80, "the router masked a frame (servers must not)"
        length, pos = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            pos = 10
        if len(buf) < pos + length:
            return None
        self._buf = buf[pos + length:]
        return first & 0x0F, buf[pos:pos + length]

    def read_close(self, timeout: float = TIMEOUT) -> tuple[int | None, bytes]:
        """Skip other frames until the router's close frame: ``(code or None, reason)``."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            assert frame is not None, "the router dropped the connection without a close frame"
            opcode, payload = frame
            if opcode == CLOSE:
                if not payload:
                    return None, b""
                return int.from_bytes(payload[:2], "big"), payload[2:]

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        """The router closes the TCP connection (after its close frame, nothing more)."""
        frame = self.read_frame(timeout)
        assert frame is None, f"the router sent {frame!r} after its close frame"

    # -- writing -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.settimeout(TIMEOUT)
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def raw_connector(router: Any) -> Iterator[Callable[..., RawV1Connector]]:
    """Makes registered raw v1 connectors; closes every socket at teardown."""
    made: list[RawV1Connector] = []

    def make(route: str, **kwargs: Any) -> RawV1Connector:
        before = router.idle_sockets(route)
        fake = RawV1Connector(router, route, **kwargs)
        made.append(fake)
        wait_for(lambda: router.idle_sockets(route) >= before + 1,
                 what=f"raw v1 connector registered on {route!r}")
        return fake

    yield make
    for fake in made:
        fake.close()


@pytest.fixture
def good(router: Any, target: Any, connector_factory: Any) -> Any:
    """A well-behaved connector (the project's real Connector) on route ``good``."""
    return connector_factory(target, route="good")


def proxies_fine(router: Any, seed: int) -> None:
    """A request through the well-behaved connector succeeds."""
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{router.http_port}/good/bytes/100000?seed={seed}",
                     timeout=30)
    assert resp.status_code == 200
    assert resp.content == deterministic_bytes(100000, seed)


# --------------------------------------------------------------------------- protocol errors


BAD_FRAMES = [
    pytest.param(client_frame(BINARY, b"not masked", masked=False), 1002, "unmasked",
                 id="unmasked"),
    pytest.param(client_frame(BINARY, b"rsv1", rsv=0b100), 1002, "reserved bits", id="rsv1"),
    pytest.param(client_frame(TEXT, b"rsv3", rsv=0b001), 1002, "reserved bits", id="rsv3"),
    pytest.param(client_frame(0x3, b"what"), 1002, "unknown opcode", id="opcode-3"),
    pytest.param(client_frame(0xB, b"what"), 1002, "unknown opcode", id="opcode-0xB"),
    pytest.param(client_frame(TEXT, b"caf\xc3 \xff\xfe"), 1007, "UTF-8", id="invalid-utf8"),
    pytest.param(client_frame(TEXT, b"ok ", fin=False) + client_frame(CONT, b"\xed\xa0\x80"),
                 1007, "UTF-8", id="invalid-utf8-fragmented"),
    # the header alone claims 32 MiB; the payload never comes
    pytest.param(client_frame(BINARY, b"", length=32 << 20), 1009, "over", id="claims-32MiB"),
    pytest.param(client_frame(BINARY, b"x" * 150_000, fin=False)
                 + client_frame(CONT, b"y" * 150_000), 1009, "over", id="fragments-over-limit"),
    pytest.param(client_frame(PING, b"p" * 126), 1002, "control frame", id="ping-126-bytes"),
    pytest.param(client_frame(PING, b"frag", fin=False), 1002, "control frame",
                 id="fragmented-ping"),
    pytest.param(client_frame(CONT, b"orphan"), 1002, "continuation", id="orphan-continuation"),
    pytest.param(client_frame(BINARY, b"a", fin=False) + client_frame(TEXT, b"b"), 1002,
                 "inside a fragmented", id="new-message-inside-fragmented"),
]


@pytest.mark.parametrize(("wire", "code", "reason"), BAD_FRAMES)
def test_bad_frame_closes_with_its_code_and_router_keeps_serving(
        router, good, raw_connector, caplog, wire, code, reason):
    caplog.set_level(logging.WARNING, logger="crank_sync")
    proxies_fine(router, seed=1)
    fake = raw_connector("bad")
    fake.send(wire)
    got, _ = fake.read_close()
    assert got == code
    fake.wait_closed()
    wait_for(lambda: router.idle_sockets("bad") == 0, what="the broken socket to leave the pool")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name.startswith("crank_sync.router")]
    assert any(reason in m and str(code) in m for m in warnings), warnings
    # the router is still serving: the well-behaved connector proxies, and a new raw
    # connector registers and answers pings
    proxies_fine(router, seed=2)
    again = raw_connector("bad")
    again.send(client_frame(PING, b"still here"))
    assert again.read_frame() == (PONG, b"still here")


def test_protocol_error_on_one_socket_leaves_the_others_registered(router, raw_connector):
    sockets = [raw_connector("many") for _ in range(3)]
    wait_for(lambda: router.idle_sockets("many") == 3, what="three sockets on 'many'")
    sockets[1].send(client_frame(0x7, b""))
    assert sockets[1].read_close()[0] == 1002
    sockets[1].wait_closed()
    wait_for(lambda: router.idle_sockets("many") == 2, what="only the broken socket to go")
    for i, other in enumerate((sockets[0], sockets[2])):
        other.send(client_frame(PING, b"ping %d" % i))
        assert other.read_frame() == (PONG, b"ping %d" % i)


# --------------------------------------------------------------------------- pings and closes


@pytest.mark.parametrize("payload", [b"", b"hello ping", bytes(range(125))],
                         ids=["empty", "short", "125-bytes"])
def test_ping_is_answered_with_a_pong_of_the_same_payload(router, raw_connector, payload):
    fake = raw_connector("pinged")
    fake.send(client_frame(PING, payload))
    assert fake.read_frame() == (PONG, payload)
    assert router.idle_sockets("pinged") == 1  # still registered after the ping


def test_pings_split_across_writes_and_batched_are_all_answered(router, raw_connector):
    fake = raw_connector("pinged")
    wire = b"".join(client_frame(PING, b"ping-%d" % i) for i in range(5))
    fake.send(wire[:3])
    fake.send(wire[3:20])
    fake.send(wire[20:])
    for i in range(5):
        assert fake.read_frame() == (PONG, b"ping-%d" % i)


def test_ping_inside_a_fragmented_message_is_answered(router, raw_connector):
    fake = raw_connector("pinged")
    fake.send(client_frame(BINARY, b"part one", fin=False))
    fake.send(client_frame(PING, b"mid-message"))
    assert fake.read_frame() == (PONG, b"mid-message")
    fake.send(client_frame(CONT, b"part two"))
    fake.send(client_frame(PING, b"after"))
    assert fake.read_frame() == (PONG, b"after")


def _close_answered(router, fake) -> int | None:
    """The code of the router's answering close frame, once the socket is closed and gone."""
    code, _ = fake.read_close()
    fake.wait_closed()
    wait_for(lambda: router.idle_sockets("closing") == 0, what="the closed socket to leave")
    return code


def test_close_from_connector_is_answered(router, raw_connector):
    fake = raw_connector("closing")
    fake.send(client_frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
    assert _close_answered(router, fake) == 1000


def test_close_without_a_code_is_answered(router, raw_connector):
    fake = raw_connector("closing")
    fake.send(client_frame(CLOSE))
    # an empty close frame, or a normal closure
    assert _close_answered(router, fake) in (None, 1000)


def test_close_inside_a_fragmented_message_is_answered(router, raw_connector):
    fake = raw_connector("closing")
    fake.send(client_frame(TEXT, b"never finished", fin=False)
              + client_frame(CLOSE, struct.pack("!H", 1001)))
    assert _close_answered(router, fake) == 1001


def test_message_of_exactly_the_limit_is_accepted(router, raw_connector):
    """The limit is inclusive: a message of MAX_MESSAGE bytes does not close the socket."""
    fake = raw_connector("limit")
    fake.send(client_frame(BINARY, b"z" * MAX_MESSAGE))
    fake.send(client_frame(PING, b"alive"))
    assert fake.read_frame() == (PONG, b"alive")
    assert router.idle_sockets("limit") == 1


BAD_CLOSE_PAYLOADS = [
    pytest.param(b"\x03", 1002, id="one-byte"),
    pytest.param(struct.pack("!H", 999), 1002, id="code-999"),
    pytest.param(struct.pack("!H", 1005), 1002, id="code-1005-local-only"),
    pytest.param(struct.pack("!H", 1006), 1002, id="code-1006-local-only"),
    pytest.param(struct.pack("!H", 1016), 1002, id="code-1016-unassigned"),
    pytest.param(struct.pack("!H", 5000), 1002, id="code-5000"),
    pytest.param(struct.pack("!H", 1000) + b"bad \xff reason", 1007, id="reason-not-utf8"),
]


@pytest.mark.parametrize(("payload", "code"), BAD_CLOSE_PAYLOADS)
def test_invalid_close_payload_is_answered_with_an_error_code(router, raw_connector, payload,
                                                              code):
    """RFC 6455 section 7.4 (codes below 1000, the local-only 1005/1006, unassigned protocol
    codes and codes of 5000 and over are not valid on the wire) and section 8.1 (a close
    reason that is not UTF-8 fails the connection, 1007). The wsproto-based reader this
    decoder replaced answered these with 1002/1007; the router must not echo an invalid code."""
    fake = raw_connector("closing")
    fake.send(client_frame(CLOSE, payload))
    assert _close_answered(router, fake) == code
