"""Connector-side websocket frames: ``crank_sync.connector.frames``.

``FrameReader`` reads the router's (unmasked) frames from ``ws.sock`` in big reads and returns
whole messages; it is driven here over a real ``socket.socketpair()``: the test writes server
frames by hand on one end, the reader's websocket-client ``WebSocket`` owns the other, and
what the reader sends back (pongs, the close answer) is read and unmasked on the test's end.
A ``Trickle`` wrapper caps every ``recv`` at a few bytes so that frames split at every
position are parsed deterministically.

``encode_frame`` is decoded by hand (FIN, opcode, mask bit, the three length encodings, the
mask) and compared with websocket-client's ``ABNF.format()``; ``mask_keys`` is checked for
length, variety and per-thread use.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from support import reference_mask, ws_frame
from websocket import ABNF

from crank_sync.connector import frames
from crank_sync.connector.frames import MAX_MESSAGE, FrameReader, encode_frame, mask_keys
from crank_sync.connector.websocket import ConnectorWebSocket
from crank_sync.errors import ConnectionLost, FrameError, ReadTimeout

TIMEOUT = 5.0
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                 mask: bytes | None = None, length: int | None = None) -> bytes:
    """A frame as the router writes it (unmasked unless ``mask``)."""
    return ws_frame(opcode, payload, fin, rsv, mask, length)


def decode_client_frame(data: bytes) -> tuple[bool, int, bool, int, bytes, bytes, int]:
    """Hand-decode one client frame: (fin, opcode, masked, length code, key, payload, size)."""
    fin = bool(data[0] & 0x80)
    assert data[0] & 0x70 == 0, "reserved bits set"
    opcode = data[0] & 0x0F
    masked = bool(data[1] & 0x80)
    code = data[1] & 0x7F
    pos = 2
    length = code
    if code == 126:
        (length,) = struct.unpack_from("!H", data, pos)
        pos += 2
    elif code == 127:
        (length,) = struct.unpack_from("!Q", data, pos)
        pos += 8
    key = data[pos:pos + 4] if masked else b""
    pos += len(key)
    payload = data[pos:pos + length]
    assert len(payload) == length, "frame truncated"
    return fin, opcode, masked, code, key, reference_mask(key, payload) if masked else payload, pos + length


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return bytes(data)


def read_client_frame(sock: socket.socket) -> tuple[bool, int, bool, bytes]:
    """One frame the reader's side sent: (fin, opcode, masked, unmasked payload)."""
    head = recv_exact(sock, 2)
    code = head[1] & 0x7F
    ext = recv_exact(sock, {126: 2, 127: 8}.get(code, 0))
    key = recv_exact(sock, 4) if head[1] & 0x80 else b""
    length = struct.unpack("!H", ext)[0] if code == 126 else struct.unpack("!Q", ext)[0] if code == 127 else code
    fin, opcode, masked, _, _, payload, _ = decode_client_frame(head + ext + key + recv_exact(sock, length))
    return fin, opcode, masked, payload


class Trickle:
    """A socket whose ``recv``/``recv_into`` return at most ``step`` bytes (the rest of the
    socket passes through)."""

    def __init__(self, sock: socket.socket, step: int) -> None:
        self._sock = sock
        self.step = step
        self.calls = 0

    def recv(self, bufsize: int, *flags: int) -> bytes:
        self.calls += 1
        return self._sock.recv(min(bufsize, self.step), *flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.calls += 1
        return self._sock.recv_into(buffer, min(nbytes or len(buffer), self.step), flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Pair:
    """The reader's ``WebSocket`` on one end of a socketpair, the test's socket on the other."""

    def __init__(self) -> None:
        self.client, self.server = socket.socketpair()
        self.client.settimeout(TIMEOUT)
        self.server.settimeout(TIMEOUT)
        self.ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        self.ws.sock = self.client
        self.ws.connected = True
        self.reader = FrameReader(ConnectorWebSocket(self.ws))

    def trickle(self, step: int) -> Trickle:
        self.ws.sock = Trickle(self.client, step)
        return self.ws.sock

    def send(self, *frames_: bytes) -> None:
        self.server.sendall(b"".join(frames_))

    def send_in_thread(self, *writes: bytes) -> threading.Thread:
        """One ``sendall`` per argument, from a named thread: for writes bigger than the socket
        buffer, which the reader drains meanwhile."""

        def write() -> None:
            for data in writes:
                self.server.sendall(data)

        thread = threading.Thread(target=write, name="test-frame-writer", daemon=True)
        thread.start()
        return thread

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


def join(thread: threading.Thread) -> None:
    thread.join(TIMEOUT + 5)
    assert not thread.is_alive(), f"{thread.name} did not finish"


def assert_nothing_else_sent(pair: Pair) -> None:
    """The next frame from the reader's side is a marker sent now: nothing came before it."""
    pair.ws.send_binary(b"marker")
    assert read_client_frame(pair.server) == (True, BINARY, True, b"marker")


# --------------------------------------------------------------------------- FrameReader: messages


PAYLOAD_64K = bytes(range(256)) * 256
PAYLOAD_70K = os.urandom(70_000)

MESSAGE_ROWS = [
    pytest.param([server_frame(BINARY, b"\x00\x01binary\xff")], [(BINARY, b"\x00\x01binary\xff")], id="binary"),
    pytest.param([server_frame(TEXT, "h\u00e9llo".encode())], [(TEXT, "h\u00e9llo".encode())], id="text-as-bytes"),
    pytest.param([server_frame(BINARY)], [(BINARY, b"")], id="empty-binary"),
    pytest.param([server_frame(TEXT)], [(TEXT, b"")], id="empty-text"),
    pytest.param([server_frame(BINARY, b"a" * 125)], [(BINARY, b"a" * 125)], id="125-short-length"),
    pytest.param([server_frame(BINARY, b"b" * 126)], [(BINARY, b"b" * 126)], id="126-16bit-length"),
    pytest.param([server_frame(BINARY, b"c" * 65535)], [(BINARY, b"c" * 65535)], id="65535-16bit-length"),
    pytest.param([server_frame(BINARY, PAYLOAD_64K)], [(BINARY, PAYLOAD_64K)], id="65536-64bit-length"),
    pytest.param([server_frame(BINARY, PAYLOAD_70K)], [(BINARY, PAYLOAD_70K)], id="70000-64bit-length"),
    pytest.param([server_frame(TEXT, b"one"), server_frame(BINARY, b"two"), server_frame(TEXT, b"three")],
                 [(TEXT, b"one"), (BINARY, b"two"), (TEXT, b"three")], id="three-in-order"),
    pytest.param([server_frame(TEXT, b"he", fin=False), server_frame(CONT, b"ll", fin=False), server_frame(CONT, b"o")],
                 [(TEXT, b"hello")], id="fragmented-text"),
    pytest.param([server_frame(BINARY, b"\x00", fin=False), server_frame(CONT, b"\x01")],
                 [(BINARY, b"\x00\x01")], id="fragmented-binary"),
    pytest.param([server_frame(BINARY, b"", fin=False), server_frame(CONT, b""), server_frame(TEXT, b"next")],
                 [(BINARY, b""), (TEXT, b"next")], id="fragmented-empty-then-next"),
    pytest.param([server_frame(BINARY, b"x" * 200, fin=False), server_frame(CONT, b"y" * 70_000)],
                 [(BINARY, b"x" * 200 + b"y" * 70_000)], id="fragmented-mixed-lengths"),
    pytest.param([server_frame(PONG, b"ignored"), server_frame(BINARY, b"after")],
                 [(BINARY, b"after")], id="pong-dropped"),
    pytest.param([server_frame(PONG), server_frame(PONG, b"p" * 125), server_frame(TEXT, b"t")],
                 [(TEXT, b"t")], id="pongs-dropped"),
    pytest.param([server_frame(TEXT, b"a", fin=False), server_frame(PONG, b"z"), server_frame(CONT, b"b")],
                 [(TEXT, b"ab")], id="pong-inside-fragmented"),
]


@pytest.mark.parametrize(("sent", "expected"), MESSAGE_ROWS)
def test_messages_in_one_write(pair: Pair, sent: list[bytes], expected: list) -> None:
    writer = pair.send_in_thread(b"".join(sent))
    try:
        got = [pair.reader.recv() for _ in expected]
    finally:
        join(writer)
    assert got == expected


@pytest.mark.parametrize(("sent", "expected"), MESSAGE_ROWS)
def test_messages_one_frame_per_write(pair: Pair, sent: list[bytes], expected: list) -> None:
    writer = pair.send_in_thread(*sent)
    try:
        got = [pair.reader.recv() for _ in expected]
    finally:
        join(writer)
    assert got == expected


@pytest.mark.parametrize("step", [1, 2, 3, 5, 9, 11])
def test_frames_split_at_every_byte_are_reassembled(pair: Pair, step: int) -> None:
    sent = [
        server_frame(TEXT, b"first"),
        server_frame(BINARY, b"m" * 300),  # 16-bit length, split inside the extension
        server_frame(PONG, b"pong"),
        server_frame(BINARY, b"f", fin=False),
        server_frame(CONT, b"g" * 130, fin=False),
        server_frame(CONT, b"h"),
        server_frame(BINARY, b"last"),
    ]
    data = b"".join(sent)
    pair.send(data)
    trickle = pair.trickle(step)
    got = [pair.reader.recv() for _ in range(4)]
    assert got == [(TEXT, b"first"), (BINARY, b"m" * 300), (BINARY, b"f" + b"g" * 130 + b"h"),
                   (BINARY, b"last")]
    assert trickle.calls >= len(data) // step


@pytest.mark.parametrize("step", [1, 5, 9, 4099])
def test_64bit_length_frame_split_across_reads(pair: Pair, step: int) -> None:
    payload = os.urandom(65536)
    writer = pair.send_in_thread(server_frame(BINARY, payload) + server_frame(TEXT, b"next"))
    try:
        pair.trickle(step)
        assert pair.reader.recv() == (BINARY, payload)
        assert pair.reader.recv() == (TEXT, b"next")
    finally:
        join(writer)


def test_frame_written_byte_by_byte_from_another_thread(pair: Pair) -> None:
    data = server_frame(BINARY, b"k" * 200) + server_frame(TEXT, b"done")

    def write() -> None:
        for byte in data:
            pair.server.sendall(bytes([byte]))

    writer = threading.Thread(target=write, name="test-frame-writer", daemon=True)
    writer.start()
    try:
        got = [pair.reader.recv(), pair.reader.recv()]
    finally:
        join(writer)
    assert got == [(BINARY, b"k" * 200), (TEXT, b"done")]


def test_64bit_length_with_70000_bytes_in_big_reads(pair: Pair) -> None:
    payload = os.urandom(70_000)
    frame = server_frame(BINARY, payload)
    assert frame[1] == 127 and struct.unpack_from("!Q", frame, 2)[0] == 70_000
    writer = pair.send_in_thread(frame + server_frame(TEXT, b"next"))
    try:
        assert pair.reader.recv() == (BINARY, payload)
        assert pair.reader.recv() == (TEXT, b"next")
    finally:
        join(writer)


# --------------------------------------------------------------------------- FrameReader: finish

# A v1 socket reads its request body with a FrameReader, then hands the socket back to
# websocket-client: finish() must complete what the buffer holds and read no further.
NEXT_FRAME = server_frame(BINARY, b"for websocket-client")


def assert_websocket_client_reads_on(pair: Pair) -> None:
    """websocket-client, reading the socket after finish(), gets exactly the next frame."""
    opcode, frame = pair.ws.recv_data_frame(True)
    assert (opcode, frame.data) == (BINARY, b"for websocket-client")


def test_finish_with_nothing_buffered_reads_nothing(pair: Pair) -> None:
    pair.send(server_frame(TEXT, b"marker"))
    assert pair.reader.recv() == (TEXT, b"marker")
    pair.send(NEXT_FRAME)
    assert pair.reader.finish() == []
    assert_websocket_client_reads_on(pair)


CLOSE_1001 = struct.pack("!H", 1001) + b"going away"


@pytest.mark.parametrize("step", [None, 7], ids=["big-reads", "7-byte-reads"])
@pytest.mark.parametrize(
    ("frame", "cut", "expected"),
    [
        pytest.param(server_frame(CLOSE, CLOSE_1001), 1, (CLOSE, CLOSE_1001), id="close-cut-in-head"),
        pytest.param(server_frame(BINARY, b"m" * 200), 3, (BINARY, b"m" * 200), id="16bit-length-cut"),
        pytest.param(server_frame(BINARY, PAYLOAD_70K), 5, (BINARY, PAYLOAD_70K), id="64bit-length-cut"),
        pytest.param(server_frame(BINARY, PAYLOAD_70K), 5000, (BINARY, PAYLOAD_70K), id="payload-cut"),
        pytest.param(server_frame(BINARY, PAYLOAD_70K), None, (BINARY, PAYLOAD_70K), id="whole-70000"),
        pytest.param(server_frame(TEXT, b"small"), None, (TEXT, b"small"), id="whole-small"),
    ],
)
def test_finish_completes_the_frame_begun_and_reads_no_further(
        pair: Pair, frame: bytes, cut: int | None, expected: tuple, step: int | None) -> None:
    cut = len(frame) if cut is None else cut
    pair.send(server_frame(TEXT, b"marker"))
    writer = pair.send_in_thread(frame[:cut])
    assert pair.reader.recv() == (TEXT, b"marker")
    # the reader's buffer holds the start of the frame before finish() is called
    wait_for_buffered(pair, min(cut, frames.RECV_BYTES))
    join(writer)
    if step:
        pair.trickle(step)
    writer = pair.send_in_thread(frame[cut:] + NEXT_FRAME)
    try:
        assert pair.reader.finish() == [expected]
    finally:
        join(writer)
    assert_websocket_client_reads_on(pair)


def wait_for_buffered(pair: Pair, n: int) -> None:
    """Read into the reader's buffer (its own read) until it holds ``n`` bytes past the
    position, so that finish() has something begun to complete."""
    reader = pair.reader
    while reader.buffered < n:
        reader.fill(n - reader.buffered)


def test_finish_answers_pings_drops_pongs_and_returns_the_close(pair: Pair) -> None:
    pair.send(server_frame(TEXT, b"marker"), server_frame(PING, b"p"), server_frame(PONG, b"q"),
              server_frame(CLOSE, CLOSE_1001), NEXT_FRAME)
    assert pair.reader.recv() == (TEXT, b"marker")
    pair.trickle(1)  # in the buffer already: finish() must not need to read
    rest = pair.reader.finish()
    assert pair.ws.sock.calls == 0
    pair.ws.sock = pair.client
    assert rest == [(CLOSE, CLOSE_1001), (BINARY, b"for websocket-client")]
    assert read_client_frame(pair.server) == (True, PONG, True, b"p")
    fin, opcode, masked, answer = read_client_frame(pair.server)
    assert (fin, opcode, masked, answer[:2]) == (True, CLOSE, True, struct.pack("!H", 1000))


def test_finish_completes_a_fragmented_message(pair: Pair) -> None:
    pair.send(server_frame(TEXT, b"marker"), server_frame(TEXT, b"frag", fin=False))
    assert pair.reader.recv() == (TEXT, b"marker")
    wait_for_buffered(pair, len(server_frame(TEXT, b"frag", fin=False)))
    pair.send(server_frame(CONT, b"men", fin=False), server_frame(CONT, b"ted"), NEXT_FRAME)
    assert pair.reader.finish() == [(TEXT, b"fragmented")]
    assert_websocket_client_reads_on(pair)


def test_finish_raises_when_the_socket_ends_mid_frame(pair: Pair) -> None:
    frame = server_frame(BINARY, b"abcdef")
    pair.send(server_frame(TEXT, b"marker"), frame[:4])
    assert pair.reader.recv() == (TEXT, b"marker")
    wait_for_buffered(pair, 4)
    pair.server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionLost):
        pair.reader.finish()


# --------------------------------------------------------------------------- FrameReader: control


def test_ping_is_answered_with_a_masked_pong(pair: Pair) -> None:
    pair.send(server_frame(PING, b"are you there"), server_frame(BINARY, b"msg"))
    assert pair.reader.recv() == (BINARY, b"msg")
    fin, opcode, masked, payload = read_client_frame(pair.server)
    assert (fin, opcode, masked, payload) == (True, PONG, True, b"are you there")


def test_empty_ping_is_answered(pair: Pair) -> None:
    pair.send(server_frame(PING), server_frame(TEXT, b"t"))
    assert pair.reader.recv() == (TEXT, b"t")
    assert read_client_frame(pair.server) == (True, PONG, True, b"")


def test_ping_inside_a_fragmented_message(pair: Pair) -> None:
    pair.send(
        server_frame(TEXT, b"frag", fin=False),
        server_frame(PING, b"p1"),
        server_frame(CONT, b"men", fin=False),
        server_frame(PING, b"p2"),
        server_frame(CONT, b"ted"),
    )
    assert pair.reader.recv() == (TEXT, b"fragmented")
    assert read_client_frame(pair.server) == (True, PONG, True, b"p1")
    assert read_client_frame(pair.server) == (True, PONG, True, b"p2")


def test_ping_split_byte_by_byte_is_answered_once(pair: Pair) -> None:
    pair.send(server_frame(PING, b"slow ping"), server_frame(BINARY, b"x"))
    pair.trickle(1)
    assert pair.reader.recv() == (BINARY, b"x")
    assert read_client_frame(pair.server) == (True, PONG, True, b"slow ping")
    assert_nothing_else_sent(pair)


def test_pong_is_not_answered(pair: Pair) -> None:
    pair.send(server_frame(PONG, b"p"), server_frame(BINARY, b"x"))
    assert pair.reader.recv() == (BINARY, b"x")
    assert_nothing_else_sent(pair)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(struct.pack("!H", 1000), id="1000"),
        pytest.param(struct.pack("!H", 1001) + b"going away", id="1001-with-reason"),
        pytest.param(b"", id="no-code"),
    ],
)
def test_close_frame_is_returned_and_answered(pair: Pair, payload: bytes) -> None:
    pair.send(server_frame(CLOSE, payload))
    assert pair.reader.recv() == (CLOSE, payload)
    fin, opcode, masked, answer = read_client_frame(pair.server)
    assert (fin, opcode, masked) == (True, CLOSE, True)
    assert answer[:2] == struct.pack("!H", 1000)


def test_close_inside_a_fragmented_message_is_returned(pair: Pair) -> None:
    pair.send(server_frame(BINARY, b"part", fin=False), server_frame(CLOSE, struct.pack("!H", 1000)))
    assert pair.reader.recv() == (CLOSE, struct.pack("!H", 1000))
    assert read_client_frame(pair.server)[1] == CLOSE


def test_close_is_returned_when_the_answer_cannot_be_sent(pair: Pair) -> None:
    pair.send(server_frame(CLOSE, struct.pack("!H", 1001)))
    pair.client.shutdown(socket.SHUT_WR)  # the close answer fails with EPIPE
    assert pair.reader.recv() == (CLOSE, struct.pack("!H", 1001))


# --------------------------------------------------------------------------- FrameReader: errors


PROTOCOL_ERROR_ROWS = [
    pytest.param([server_frame(BINARY, b"abc", mask=b"\x01\x02\x03\x04")], "masked", id="masked-frame"),
    pytest.param([server_frame(PING, b"", mask=b"\x00\x00\x00\x00")], "masked", id="masked-ping"),
    pytest.param([server_frame(BINARY, b"abc", rsv=0b100)], "reserved", id="rsv1"),
    pytest.param([server_frame(BINARY, b"abc", rsv=0b010)], "reserved", id="rsv2"),
    pytest.param([server_frame(TEXT, b"abc", rsv=0b001)], "reserved", id="rsv3"),
    pytest.param([server_frame(CONT, b"abc")], "continuation", id="cont-without-start"),
    pytest.param([server_frame(CONT, b"abc", fin=False)], "continuation", id="cont-nonfinal-without-start"),
    pytest.param([server_frame(TEXT, b"a"), server_frame(CONT, b"b")], "continuation", id="cont-after-complete-message"),
    pytest.param([server_frame(TEXT, b"a", fin=False), server_frame(TEXT, b"b")], "inside a fragmented", id="text-inside-fragmented"),
    pytest.param([server_frame(BINARY, b"a", fin=False), server_frame(BINARY, b"b", fin=False)], "inside a fragmented", id="binary-inside-fragmented"),
    pytest.param([server_frame(0x3, b"x")], "unknown opcode", id="data-opcode-3"),
    pytest.param([server_frame(0x7, b"x")], "unknown opcode", id="data-opcode-7"),
    pytest.param([server_frame(0xB, b"x")], "unknown opcode", id="control-opcode-b"),
    pytest.param([server_frame(0xF, b"x")], "unknown opcode", id="control-opcode-f"),
]


@pytest.mark.parametrize(("sent", "message"), PROTOCOL_ERROR_ROWS)
def test_protocol_errors(pair: Pair, sent: list[bytes], message: str) -> None:
    pair.send(*sent)
    with pytest.raises(FrameError, match=message) as info:
        for _ in range(len(sent)):
            pair.reader.recv()
    assert (info.value.code, info.value.too_long) == (1002, False)


def test_frame_longer_than_max_message_raises_before_its_payload(pair: Pair) -> None:
    pair.send(struct.pack("!BBQ", 0x82, 127, MAX_MESSAGE + 1))  # header only
    with pytest.raises(FrameError) as info:
        pair.reader.recv()
    assert (info.value.code, info.value.too_long) == (1009, True)


def test_frame_length_with_top_bit_set_raises(pair: Pair) -> None:
    pair.send(struct.pack("!BBQ", 0x82, 127, 1 << 63))
    with pytest.raises(FrameError) as info:
        pair.reader.recv()
    assert (info.value.code, info.value.too_long) == (1002, True)


def test_max_message_is_64_mib() -> None:
    assert MAX_MESSAGE == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("sizes", "too_long"),
    [
        pytest.param([10], False, id="one-frame-at-limit"),
        pytest.param([11], True, id="one-frame-over-limit"),
        pytest.param([4, 3, 3], False, id="fragments-at-limit"),
        pytest.param([4, 3, 4], True, id="fragments-over-limit"),
        pytest.param([0, 11], True, id="empty-start-then-over-limit"),
    ],
)
def test_max_message_limits_frames_and_reassembled_messages(pair: Pair, monkeypatch, sizes, too_long) -> None:
    pair.reader = FrameReader(ConnectorWebSocket(pair.ws), max_message=10)
    parts = [b"%d" % i * n for i, n in enumerate(sizes)]
    sent = [server_frame(BINARY if i == 0 else CONT, part, fin=(i == len(parts) - 1))
            for i, part in enumerate(parts)]
    pair.send(*sent)
    if too_long:
        with pytest.raises(FrameError) as info:
            pair.reader.recv()
        assert info.value.too_long
    else:
        assert pair.reader.recv() == (BINARY, b"".join(parts))


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"\x82", id="half-a-header"),
        pytest.param(b"\x82\x7e\x01", id="half-an-extended-length"),
        pytest.param(server_frame(BINARY, b"abcdef")[:-2], id="payload-cut"),
        pytest.param(server_frame(TEXT, b"a", fin=False), id="fragmented-cut"),
    ],
)
def test_eof_raises_connection_closed(pair: Pair, sent: bytes) -> None:
    pair.send(sent)
    pair.server.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionLost):
        pair.reader.recv()


def test_eof_after_complete_messages(pair: Pair) -> None:
    pair.send(server_frame(TEXT, b"one"), server_frame(BINARY, b"two"))
    pair.server.close()
    assert pair.reader.recv() == (TEXT, b"one")
    assert pair.reader.recv() == (BINARY, b"two")
    with pytest.raises(ConnectionLost):
        pair.reader.recv()


def test_closed_websocket_raises_connection_closed(pair: Pair) -> None:
    pair.ws.shutdown()  # ws.sock is None now
    with pytest.raises(ConnectionLost):
        pair.reader.recv()


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(server_frame(BINARY, b"abc")[:3], id="part-of-a-frame"),
        pytest.param(server_frame(TEXT, b"a", fin=False), id="part-of-a-message"),
    ],
)
def test_socket_timeout_raises_read_timeout(pair: Pair, sent: bytes) -> None:
    if sent:
        pair.send(sent)
    pair.client.settimeout(0.2)
    with pytest.raises(ReadTimeout):
        pair.reader.recv()


def test_reading_continues_after_a_timeout(pair: Pair) -> None:
    frame = server_frame(BINARY, b"resumed")
    pair.send(frame[:4])
    pair.client.settimeout(0.2)
    with pytest.raises(ReadTimeout):
        pair.reader.recv()
    pair.client.settimeout(TIMEOUT)
    pair.send(frame[4:])
    assert pair.reader.recv() == (BINARY, b"resumed")


# --------------------------------------------------------------------------- encode_frame


@pytest.mark.parametrize(
    ("size", "length_code", "header_size"),
    [
        pytest.param(0, 0, 6, id="0"),
        pytest.param(1, 1, 6, id="1"),
        pytest.param(125, 125, 6, id="125"),
        pytest.param(126, 126, 8, id="126"),
        pytest.param(127, 126, 8, id="127"),
        pytest.param(65535, 126, 8, id="65535"),
        pytest.param(65536, 127, 14, id="65536"),
        pytest.param(70_000, 127, 14, id="70000"),
    ],
)
@pytest.mark.parametrize("opcode", [TEXT, BINARY, CLOSE, PING, PONG])
def test_encode_frame_by_hand(size: int, length_code: int, header_size: int, opcode: int) -> None:
    payload = os.urandom(size)
    data = encode_frame(opcode, payload)
    fin, got_opcode, masked, code, key, unmasked, end = decode_client_frame(data)
    assert fin is True
    assert got_opcode == opcode
    assert masked is True
    assert code == length_code
    assert len(key) == 4
    assert len(data) == header_size + size == end
    assert unmasked == payload


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING])
def test_encode_frame_equals_websocket_client_format(size: int, opcode: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = encode_frame(opcode, payload)
    key = decode_client_frame(data)[4]
    frame = ABNF.create_frame(payload, opcode)
    frame.get_mask_key = lambda n: key
    assert data == frame.format()


def test_encode_frame_uses_a_new_key_each_time() -> None:
    keys = {decode_client_frame(encode_frame(BINARY, b"same"))[4] for _ in range(200)}
    assert len(keys) > 190


def test_encoded_frames_are_read_back_by_websocket_client(pair: Pair) -> None:
    """The router's side, played by websocket-client's own (server-tolerant) frame parser."""
    messages = [(TEXT, b"head"), (BINARY, b"\x00" * 300), (BINARY, os.urandom(70_000)), (PING, b"p")]
    data = b"".join(encode_frame(op, p) for op, p in messages)
    writer = pair.send_in_thread(data)
    try:
        got = [pair.ws.recv_data_frame(True) for _ in messages]
    finally:
        join(writer)
    assert [(op, f.data) for op, f in got] == messages
    assert all(f.mask_value == 1 for _, f in got)  # the mask bit was set on each


# --------------------------------------------------------------------------- mask_keys


def test_mask_keys_returns_four_bytes() -> None:
    key = mask_keys()
    assert isinstance(key, bytes)
    assert len(key) == 4


def test_mask_keys_are_nearly_all_distinct() -> None:
    keys = [mask_keys() for _ in range(2000)]  # crosses the 1,024-key block boundary
    assert all(len(k) == 4 for k in keys)
    assert len(set(keys)) > 1990
    assert all(a != b for a, b in zip(keys, keys[1:], strict=False))


def test_mask_keys_as_websocket_client_get_mask_key() -> None:
    """websocket-client calls ``get_mask_key(4)``."""
    keys = [mask_keys(4) for _ in range(1500)]
    assert all(len(k) == 4 for k in keys)
    assert len(set(keys)) > 1490


@pytest.mark.parametrize("length", [1, 3, 7, 16, 1000, 4096])
def test_mask_keys_other_lengths(length: int) -> None:
    keys = [mask_keys(length) for _ in range(20)]
    assert all(len(k) == length for k in keys)


def test_mask_keys_from_several_threads() -> None:
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4, timeout=TIMEOUT)

    def draw(index: int) -> None:
        try:
            start.wait()
            results[index] = [mask_keys() for _ in range(1500)]
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=draw, args=(i,), name=f"test-mask-keys-{i}", daemon=True)
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        join(t)
    assert not errors
    assert sorted(results) == [0, 1, 2, 3]
    everything = [k for keys in results.values() for k in keys]
    assert all(len(k) == 4 for k in everything)
    assert len(set(everything)) > len(everything) - 10
    # each thread has its own block: no two threads start with the same keys
    assert len({tuple(keys[:8]) for keys in results.values()}) == 4
