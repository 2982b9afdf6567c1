"""The shared websocket layer, ``crank_sync.ws``: what both roles share and where they differ.

The decoders' frame-by-frame rules are table-tested per side (``tests/wire/test_frames.py``
for the server role, ``tests/connector/test_frames.py`` through the connector's reader); here:
the role decides the masking, the close frame's payload both ways, the client handshake's
checks, and the one rule for a silent peer.
"""
from __future__ import annotations

import pytest
from support import ws_frame

from crank_sync.ws.connection import close_payload, parse_close
from crank_sync.ws.frames import FrameDecoder, FrameError, Opcode, Role, encode_frame
from crank_sync.ws.handshake import (
    HandshakeError,
    Target,
    accept_value,
    client_request,
    parse_response_head,
    server_response,
    subprotocol_of,
)
from crank_sync.ws.ping import silent_too_long

KEY = b"\x01\x02\x03\x04"


@pytest.mark.parametrize(
    ("role", "masked", "ok"),
    [
        pytest.param(Role.SERVER, True, True, id="server-masked"),
        pytest.param(Role.SERVER, False, False, id="server-unmasked"),
        pytest.param(Role.CLIENT, False, True, id="client-unmasked"),
        pytest.param(Role.CLIENT, True, False, id="client-masked"),
    ],
)
def test_the_role_decides_which_masking_is_accepted(role: Role, masked: bool, ok: bool) -> None:
    dec = FrameDecoder(role, 1000)
    dec.feed(ws_frame(Opcode.BINARY, b"hello", True, 0, KEY if masked else None, None, None))
    if ok:
        assert dec.next() == (Opcode.BINARY, b"hello")
        assert dec.next() is None
    else:
        with pytest.raises(FrameError) as info:
            dec.next()
        assert info.value.code == 1002
        assert "masked" in info.value.reason


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 70000])
def test_encoded_frames_decode_in_the_opposite_role(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    server, client = FrameDecoder(Role.SERVER, None), FrameDecoder(Role.CLIENT, None)
    server.feed(encode_frame(Opcode.BINARY, payload, masked=True))
    client.feed(encode_frame(Opcode.TEXT, payload))
    assert server.next() == (Opcode.BINARY, payload)
    assert client.next() == (Opcode.TEXT, payload)


def test_missing_counts_the_rest_of_the_frame_begun() -> None:
    frame = encode_frame(Opcode.BINARY, b"x" * 300)
    dec = FrameDecoder(Role.CLIENT, None)
    assert dec.missing() == 2
    dec.feed(frame[:1])
    assert dec.missing() == 1
    dec.feed(frame[1:3])
    assert dec.missing() == 1  # the 16-bit length's second byte
    dec.feed(frame[3:100])
    assert dec.missing() == len(frame) - 100
    dec.feed(frame[100:])
    assert dec.next() == (Opcode.BINARY, b"x" * 300)


@pytest.mark.parametrize(
    ("code", "reason", "payload"),
    [
        pytest.param(1000, "bye", b"\x03\xe8bye", id="code-and-reason"),
        pytest.param(1005, None, b"", id="no-status-is-empty"),
        pytest.param(None, None, b"", id="none-is-empty"),
        pytest.param(1001, "\u00e9" * 70, b"\x03\xe9" + "\u00e9".encode() * 61, id="cut-at-a-whole-character"),
    ],
)
def test_close_payload(code: int | None, reason: str | None, payload: bytes) -> None:
    assert close_payload(code, reason) == payload
    assert len(payload) <= 125


@pytest.mark.parametrize(
    ("payload", "result"),
    [
        pytest.param(b"", (1005, ""), id="empty"),
        pytest.param(b"\x03\xe8ok", (1000, "ok"), id="normal"),
        pytest.param(b"\x0b\xb8", (3000, ""), id="registered-range"),
        pytest.param(b"\x03", 1002, id="one-byte"),
        pytest.param(b"\x03\xed", 1002, id="1005-may-not-be-sent"),
        pytest.param(b"\x03\xe8\xff", 1007, id="reason-not-utf8"),
    ],
)
def test_parse_close(payload: bytes, result: tuple[int, str] | int) -> None:
    if isinstance(result, int):
        with pytest.raises(FrameError) as info:
            parse_close(payload)
        assert info.value.code == result
    else:
        assert parse_close(payload) == result


def test_client_request_and_server_response_agree() -> None:
    request, key = client_request(Target("h:81", "/register/?a=b", "http"), ["Route: r"])
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /register/?a=b HTTP/1.1"
    assert "Host: h:81" in lines and "Route: r" in lines and f"Sec-WebSocket-Key: {key}" in lines
    assert request.endswith(b"\r\n\r\n")
    status, headers, _ = parse_response_head(server_response(key, "cranker_3.0", [(b"X", b"1")]))
    assert status == 101
    assert subprotocol_of(headers, key) == "cranker_3.0"
    assert headers["x"] == "1"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"sec-websocket-accept": accept_value("another key")}, id="wrong-accept"),
        pytest.param({"sec-websocket-accept": ""}, id="no-accept"),
        pytest.param({"upgrade": "h2c"}, id="not-websocket"),
        pytest.param({"connection": "close"}, id="no-connection-upgrade"),
    ],
)
def test_subprotocol_of_rejects_a_bad_101(change: dict[str, str]) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = {"upgrade": "websocket", "connection": "Upgrade",
               "sec-websocket-accept": accept_value(key)}
    assert subprotocol_of(headers, key) is None
    with pytest.raises(HandshakeError):
        subprotocol_of({**headers, **change}, key)


def test_accept_value_of_the_rfc_example() -> None:
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("silence", "given_up"),
    [(0.0, False), (1.0, False), (1.99, False), (2.0, True), (5.0, True)],
)
def test_silent_for_twice_the_ping_interval(silence: float, given_up: bool) -> None:
    assert silent_too_long(100.0, 1.0, 100.0 + silence) is given_up
