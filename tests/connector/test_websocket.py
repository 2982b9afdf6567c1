"""``crank_sync.connector.websocket.ConnectorWebSocket``: websocket-client's and the socket's
errors become crank_sync errors where they arise, the original as the ``__cause__``.

Each test puts a websocket-client ``WebSocket`` on one end of a socketpair (as
``open_websocket`` hands it the socket after the upgrade) and plays the router on the other.
"""
from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
import websocket

from crank_sync.connector.websocket import ConnectorWebSocket, translated
from crank_sync.errors import ConnectionLost, FrameError, ReadTimeout, WebSocketError
from crank_sync.ws.frames import Opcode, encode_frame

TIMEOUT = 5.0


class Pair:
    def __init__(self) -> None:
        self.client, self.server = socket.socketpair()
        self.client.settimeout(TIMEOUT)
        self.server.settimeout(TIMEOUT)
        raw = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        raw.sock = self.client
        raw.connected = True
        self.ws = ConnectorWebSocket(raw)

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


def test_recv_frame_returns_opcode_and_payload(pair: Pair) -> None:
    pair.server.sendall(encode_frame(Opcode.TEXT, b"hello", masked=False)
                        + encode_frame(Opcode.CLOSE, struct.pack("!H", 1000), masked=False))
    assert pair.ws.recv_frame() == (Opcode.TEXT, b"hello")
    assert pair.ws.recv_frame() == (Opcode.CLOSE, struct.pack("!H", 1000))


def test_a_read_that_times_out_is_read_timeout(pair: Pair) -> None:
    pair.ws.settimeout(0.05)
    with pytest.raises(ReadTimeout) as info:
        pair.ws.recv_frame()
    assert isinstance(info.value.__cause__, websocket.WebSocketTimeoutException)


def test_the_router_closing_the_connection_is_connection_lost(pair: Pair) -> None:
    pair.server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionLost) as info:
        pair.ws.recv_frame()
    assert isinstance(info.value.__cause__, websocket.WebSocketConnectionClosedException)


def test_a_frame_against_the_protocol_is_frame_error(pair: Pair) -> None:
    pair.server.sendall(b"\xc2\x01x")  # RSV1 set: websocket-client refuses it
    with pytest.raises(FrameError) as info:
        pair.ws.recv_frame()
    assert info.value.code == 1002
    assert isinstance(info.value.__cause__, websocket.WebSocketProtocolException)


def test_writes_to_a_dead_peer_are_connection_lost(pair: Pair) -> None:
    pair.server.close()
    with pytest.raises(ConnectionLost) as info:
        pair.ws.send_frames([(Opcode.BINARY, b"x")])
    assert isinstance(info.value.__cause__, OSError)
    for write in (lambda: pair.ws.send_binary(b"x"), pair.ws.ping, lambda: pair.ws.pong(b"")):
        with pytest.raises(ConnectionLost):
            write()


def test_every_call_after_shutdown_is_connection_lost(pair: Pair) -> None:
    pair.ws.shutdown()
    assert pair.ws.sock is None
    pair.ws.shutdown()  # again: never raises
    calls = [pair.ws.recv_frame, pair.ws.ping, lambda: pair.ws.pong(b""),
             lambda: pair.ws.send_binary(b"x"), lambda: pair.ws.send_frames([(Opcode.TEXT, b"")]),
             lambda: pair.ws.send_close(1001, b"bye")]
    for call in calls:
        with pytest.raises(ConnectionLost):
            call()
    pair.ws.close(1000, "", 0.1)  # websocket-client's close of a closed socket does nothing


@pytest.mark.parametrize(
    ("err", "reading", "kind"),
    [
        pytest.param(websocket.WebSocketTimeoutException("timed out"), True, ReadTimeout, id="read-timeout"),
        pytest.param(TimeoutError("timed out"), True, ReadTimeout, id="socket-read-timeout"),
        pytest.param(websocket.WebSocketTimeoutException("timed out"), False, ConnectionLost, id="write-timeout"),
        pytest.param(ConnectionResetError(104, "Connection reset by peer"), True, ConnectionLost, id="reset"),
        pytest.param(websocket.WebSocketPayloadException("bad"), True, FrameError, id="payload"),
        pytest.param(websocket.WebSocketConnectionClosedException(), True, ConnectionLost, id="no-text"),
    ],
)
def test_translated(err: BaseException, reading: bool, kind: type[WebSocketError]) -> None:
    got = translated(err, reading=reading)
    assert type(got) is kind
    assert str(got) == (str(err) or repr(err))  # what the connector's log lines show
