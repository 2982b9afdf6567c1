"""Connector websocket upgrade: ``crank_sync.connector.handshake``.

``open_websocket`` (``upgrade``, in a ``ConnectorWebSocket``) lets websocket-client open the
connection and build the request, but reads
the HTTP 101 response head itself: on a plain socket it peeks and consumes exactly the head, so
the bytes of a websocket frame that arrive in the same TCP segment stay in the socket.

Tested here against a tiny scripted server (one named thread, plain ``socket`` on 127.0.0.1:0):
a normal 101 (status, lower-case headers, echoed subprotocol, repeated Set-Cookie), the head
trickled one byte per ``sendall``, the head followed by a frame in the same write, heads of
exactly and just over ``MAX_HEAD`` bytes, non-101 answers, a wrong Sec-WebSocket-Accept, a
server that hangs up or stays silent; over TLS, where websocket-client's own reader is kept;
then ``read_response_head`` over a socketpair (split at every position), ``parse_response_head``
as a table (checked against websocket-client's ``_http.read_headers``), and one end-to-end
upgrade against the real router.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
import trustme
import websocket
from support import LOOPBACK, wait_for

from crank_sync.connector.handshake import open_websocket, upgrade
from crank_sync.connector.worker import handshake_headers
from crank_sync.errors import ConnectionLost, RegistrationRefused, TlsError
from crank_sync.ws.handshake import (
    MAX_HEAD,
    HandshakeError,
    parse_response_head,
    read_response_head,
)

TIMEOUT = 5.0
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CUSTOM_HEADER = "X-Crank-Test: present"

# A server frame as the router sends it: unmasked, final, binary, payload b"abc".
BINARY_ABC = b"\x82\x03abc"


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a correct server answers to ``key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def head_101(key: str, extra: tuple[str, ...] = (), accept: str | None = None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_for(key) if accept is None else accept}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------- scripted server


class Request:
    """The upgrade request as the scripted server read it."""

    def __init__(self, head: bytes) -> None:
        text = head.decode("latin-1")
        first, *rest = text.split("\r\n")
        self.request_line = first
        self.headers: dict[str, str] = {}
        for line in rest:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()

    @property
    def key(self) -> str:
        return self.headers["sec-websocket-key"]


Respond = Callable[[socket.socket, Request], None]


class ScriptedServer:
    """Accepts one connection, reads the request head, lets ``respond`` answer, then keeps
    the connection open until the client closes it (so no frame byte is lost to a reset)."""

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.request: Request | None = None
        self.errors: list[BaseException] = []
        self.saw_eof = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-scripted-ws-server",
                                       daemon=True)
        self.thread.start()

    def url(self, path: str = "/register/?connectorInstanceID=x&componentName=y") -> str:
        return f"{'wss' if self.tls else 'ws'}://{LOOPBACK}:{self.port}{path}"

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as err:
            self.errors.append(err)
            return
        try:
            conn.settimeout(TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)  # detaches the plain one
            head = bytearray()
            while not head.endswith(b"\r\n\r\n"):
                chunk = conn.recv(1)
                if not chunk:
                    raise AssertionError("client closed before the end of its request head")
                head += chunk
            self.request = Request(bytes(head))
            assert "sec-websocket-key" in self.request.headers, self.request.headers
            self.respond(conn, self.request)
            self._drain(conn)
        except BaseException as err:  # reported by the test through check()
            self.errors.append(err)
        finally:
            conn.close()

    def _drain(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass  # the client closed with our bytes unread (or without TLS close): also the end
        self.saw_eof.set()

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept()
        except OSError:
            pass
        self.listener.close()
        self.thread.join(TIMEOUT + 5)
        assert not self.thread.is_alive(), "scripted server thread did not finish"

    def check(self) -> None:
        """Stop, and fail with the first error the server thread met."""
        self.stop()
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(respond: Respond, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        server = ScriptedServer(respond, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def connect(server: ScriptedServer, header: tuple[str, ...] = (CUSTOM_HEADER,),
            **kwargs) -> websocket.WebSocket:
    return upgrade(server.url(), timeout=TIMEOUT, header=list(header), **kwargs)


# --------------------------------------------------------------------------- responders


def answer_101(extra: tuple[str, ...] = (), tail: bytes = b"") -> Respond:
    """A correct 101 (plus ``extra`` header lines), with ``tail`` in the same ``sendall``."""

    def respond(conn: socket.socket, req: Request) -> None:
        conn.sendall(head_101(req.key, extra) + tail)

    return respond


def answer_101_bytewise(tail: bytes = b"") -> Respond:
    """A correct 101 written one byte per ``sendall`` (TCP_NODELAY is on)."""

    def respond(conn: socket.socket, req: Request) -> None:
        for byte in head_101(req.key, ("Sec-WebSocket-Protocol: cranker_1.0",)) + tail:
            conn.sendall(bytes([byte]))

    return respond


def answer_raw(data: bytes) -> Respond:
    def respond(conn: socket.socket, req: Request) -> None:
        try:
            conn.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client may give up and close before reading it all

    return respond


def answer_status(status: int, reason: str) -> Respond:
    body = f"{status} {reason}\n".encode()
    return answer_raw(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"X-Why: scripted\r\n\r\n".encode() + body
    )


def answer_wrong_accept(conn: socket.socket, req: Request) -> None:
    conn.sendall(head_101(req.key, accept=accept_for(req.key + "x")))


def answer_without_upgrade(conn: socket.socket, req: Request) -> None:
    head = (f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(req.key)}\r\n\r\n")
    conn.sendall(head.encode())


def hang_up(conn: socket.socket, req: Request) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def answer_then_hang_up(data: bytes) -> Respond:
    def respond(conn: socket.socket, req: Request) -> None:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_RDWR)

    return respond


def stay_silent(conn: socket.socket, req: Request) -> None:
    pass  # then wait for the client to give up and close


def answer_head_of_length(total: int, tail: bytes = b"") -> Respond:
    """A correct 101 padded with an ``X-Pad`` header to exactly ``total`` bytes of head."""

    def respond(conn: socket.socket, req: Request) -> None:
        bare = head_101(req.key, ("X-Pad: ",))
        head = head_101(req.key, ("X-Pad: " + "p" * (total - len(bare)),))
        assert len(head) == total
        answer_raw(head + tail)(conn, req)

    return respond


# --------------------------------------------------------------------------- successful upgrades


def test_normal_101_gives_a_connected_websocket(serve) -> None:
    server = serve(answer_101(("Sec-WebSocket-Protocol: cranker_3.0", "CrankerProtocol: 3.0",
                               "X-Mixed-Case: Value Kept")))
    ws = connect(server)
    try:
        assert ws.connected
        assert ws.getstatus() == 101
        headers = ws.getheaders()
        assert headers == {
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-accept": accept_for(server.request.key),
            "sec-websocket-protocol": "cranker_3.0",
            "crankerprotocol": "3.0",
            "x-mixed-case": "Value Kept",
        }
        # The subprotocol list goes in ``header`` (not websocket-client's ``subprotocols``), so,
        # as with websocket.create_connection(header=...), the echo is only in the headers.
        assert ws.getsubprotocol() is None
    finally:
        ws.shutdown()
    server.check()


def test_request_carries_custom_headers_and_websocket_fields(serve) -> None:
    server = serve(answer_101())
    ws = connect(server, header=(CUSTOM_HEADER, "Route: myroute"))
    ws.shutdown()
    server.check()
    req = server.request
    assert req.request_line == "GET /register/?connectorInstanceID=x&componentName=y HTTP/1.1"
    assert req.headers["x-crank-test"] == "present"
    assert req.headers["route"] == "myroute"
    assert req.headers["upgrade"].lower() == "websocket"
    assert req.headers["connection"].lower() == "upgrade"
    assert req.headers["sec-websocket-version"] == "13"
    assert req.headers["host"] == f"{LOOPBACK}:{server.port}"
    assert len(base64.b64decode(req.key)) == 16


def test_timeout_and_socket_options_are_applied(serve) -> None:
    server = serve(answer_101())
    ws = connect(server, sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))
    try:
        assert ws.sock.gettimeout() == TIMEOUT
        assert ws.gettimeout() == TIMEOUT
        assert ws.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        ws.shutdown()
    server.check()


def test_websocket_clients_default_socket_options_are_applied(serve) -> None:
    """As websocket.create_connection does: TCP_NODELAY and keepalive without being asked."""
    server = serve(answer_101())
    ws = connect(server)
    try:
        for level, name, value in websocket.DEFAULT_SOCKET_OPTION:
            assert ws.sock.getsockopt(level, name) == value, (level, name)
    finally:
        ws.shutdown()
    server.check()


def test_same_result_as_websocket_create_connection(serve) -> None:
    # (cookies without Domain=: websocket-client's global cookie jar keeps only those with one)
    extra = ("Sec-WebSocket-Protocol: cranker_1.0", "CrankerProtocol: 1.0",
             "Set-Cookie: a=1", "Set-Cookie: b=2")
    ours_server, theirs_server = serve(answer_101(extra)), serve(answer_101(extra))
    ours = connect(ours_server)
    theirs = websocket.create_connection(theirs_server.url(), timeout=TIMEOUT,
                                         header=[CUSTOM_HEADER])
    try:
        ours_headers = dict(ours.getheaders())
        theirs_headers = dict(theirs.getheaders())
        # the accept value depends on each connection's random key
        assert ours_headers.pop("sec-websocket-accept") == accept_for(ours_server.request.key)
        assert theirs_headers.pop("sec-websocket-accept") == accept_for(theirs_server.request.key)
        assert ours_headers == theirs_headers
        assert ours.getstatus() == theirs.getstatus() == 101
        assert ours.getsubprotocol() == theirs.getsubprotocol()
    finally:
        ours.shutdown()
        theirs.shutdown()
    ours_server.check()
    theirs_server.check()


def test_repeated_set_cookie_headers_are_joined(serve) -> None:
    server = serve(answer_101(("Set-Cookie: a=1; Path=/", "Set-Cookie: b=2", "Set-Cookie: c=3")))
    ws = connect(server)
    try:
        assert ws.getheaders()["set-cookie"] == "a=1; Path=/; b=2; c=3"
    finally:
        ws.shutdown()
    server.check()


def test_head_written_one_byte_at_a_time_still_parses(serve) -> None:
    server = serve(answer_101_bytewise())
    ws = connect(server)
    try:
        assert ws.getstatus() == 101
        assert ws.getheaders()["sec-websocket-protocol"] == "cranker_1.0"
    finally:
        ws.shutdown()
    server.check()


def test_frame_trickled_after_bytewise_head_is_still_read(serve) -> None:
    server = serve(answer_101_bytewise(tail=BINARY_ABC))
    ws = connect(server)
    try:
        opcode, frame = ws.recv_data_frame(True)
        assert (opcode, frame.data) == (websocket.ABNF.OPCODE_BINARY, b"abc")
    finally:
        ws.shutdown()
    server.check()


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        pytest.param(BINARY_ABC, [(2, b"abc")], id="binary-abc"),
        pytest.param(b"\x81\x02hi", [(1, b"hi")], id="text-hi"),
        pytest.param(b"\x82\x00", [(2, b"")], id="empty-binary"),
        pytest.param(b"\x82\x03abc\x81\x02hi\x89\x01p", [(2, b"abc"), (1, b"hi"), (9, b"p")], id="three-frames"),
        pytest.param(b"\x82\x7e\x01\x00" + b"z" * 256, [(2, b"z" * 256)], id="126-length"),
        pytest.param(b"\r\n\r\n\x82\x01x", None, id="crlf-bytes-right-after-head"),
    ],
)
def test_frames_after_the_head_in_the_same_write_stay_in_the_socket(serve, tail, expected) -> None:
    server = serve(answer_101(tail=tail))
    ws = connect(server)
    try:
        if expected is None:
            # the head ends at the first blank line: the CR LF CR LF after it is not head
            assert ws.sock.recv(4, socket.MSG_PEEK) == b"\r\n\r\n"
            assert ws.sock.recv(8) == tail
        else:
            got = []
            for _ in expected:
                opcode, frame = ws.recv_data_frame(True)
                got.append((opcode, frame.data))
            assert got == expected
    finally:
        ws.shutdown()
    server.check()


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-by-byte"])
def test_head_with_bare_lf_line_endings_is_accepted(serve, bytewise) -> None:
    """websocket-client accepts a 101 whose lines end in LF alone; so do we, and the frame
    that follows in the same stream stays in the socket."""

    def respond(conn: socket.socket, req: Request) -> None:
        data = head_101(req.key, ("Sec-WebSocket-Protocol: cranker_3.0",)).replace(b"\r\n", b"\n")
        data += BINARY_ABC
        for piece in ([bytes([b]) for b in data] if bytewise else [data]):
            conn.sendall(piece)

    server = serve(respond)
    ws = connect(server)
    try:
        assert ws.getstatus() == 101
        assert ws.getheaders()["sec-websocket-protocol"] == "cranker_3.0"
        opcode, frame = ws.recv_data_frame(True)
        assert (opcode, frame.data) == (2, b"abc")
    finally:
        ws.shutdown()
    server.check()


def test_messages_sent_by_the_websocket_are_masked_client_frames(serve) -> None:
    received = {}

    def respond(conn: socket.socket, req: Request) -> None:
        conn.sendall(head_101(req.key))
        data = bytearray()
        while len(data) < 2 + 4 + 5:
            chunk = conn.recv(64)
            assert chunk, "client closed before its frame"
            data += chunk
        received["frame"] = bytes(data)

    server = serve(respond)
    ws = connect(server)
    try:
        ws.send_binary(b"hello")
    finally:
        ws.shutdown()  # the frame is sent before the FIN; the server reads it, then the EOF
    server.check()
    frame = received["frame"]
    assert frame[0] == 0x82
    assert frame[1] == 0x80 | 5
    key = frame[2:6]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(frame[6:])) == b"hello"


@pytest.mark.parametrize(
    "tail",
    [pytest.param(b"", id="head-only"), pytest.param(BINARY_ABC, id="head-then-frame")],
)
def test_head_of_exactly_max_head_bytes_is_accepted(serve, tail) -> None:
    server = serve(answer_head_of_length(MAX_HEAD, tail))
    ws = connect(server)
    try:
        assert ws.getstatus() == 101
        assert len(ws.getheaders()["x-pad"]) > MAX_HEAD - 200
        if tail:
            opcode, frame = ws.recv_data_frame(True)
            assert (opcode, frame.data) == (2, b"abc")
    finally:
        ws.shutdown()
    server.check()


# --------------------------------------------------------------------------- failed upgrades


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param(403, "Forbidden", id="403"),
        pytest.param(401, "Unauthorized", id="401"),
        pytest.param(404, "Not Found", id="404"),
        pytest.param(200, "OK", id="200"),
        pytest.param(503, "Service Unavailable", id="503"),
    ],
)
def test_status_other_than_101_raises_registration_refused(serve, status, reason) -> None:
    server = serve(answer_status(status, reason))
    with pytest.raises(RegistrationRefused) as info:
        connect(server)
    assert info.value.status_code == status
    assert info.value.status_message == reason
    assert info.value.headers["x-why"] == "scripted"
    assert str(info.value) == f"Handshake status {status} {reason}"
    assert server.saw_eof.wait(TIMEOUT), "open_websocket did not close the socket"
    server.check()


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(answer_wrong_accept, id="wrong-accept"),
        pytest.param(answer_without_upgrade, id="no-upgrade-header"),
    ],
)
def test_invalid_101_raises_handshake_error(serve, respond) -> None:
    server = serve(respond)
    with pytest.raises(HandshakeError):
        connect(server)
    assert server.saw_eof.wait(TIMEOUT), "open_websocket did not close the socket"
    server.check()


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(hang_up, id="no-answer"),
        pytest.param(answer_then_hang_up(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"), id="half-a-head"),
        pytest.param(answer_then_hang_up(b"HTTP/1.1 101 Switching Protocols\r\n\r"), id="head-cut-inside-blank-line"),
    ],
)
def test_server_closing_during_the_handshake_raises(serve, respond) -> None:
    server = serve(respond)
    with pytest.raises(ConnectionLost):
        connect(server)
    server.check()


def test_silent_server_times_out(serve) -> None:
    server = serve(stay_silent)
    with pytest.raises(ConnectionLost) as info:
        open_websocket(server.url(), timeout=0.2, header=[CUSTOM_HEADER])
    assert isinstance(info.value.__cause__, TimeoutError)
    assert server.saw_eof.wait(TIMEOUT), "open_websocket did not close the socket"
    server.check()


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(answer_head_of_length(MAX_HEAD + 1), id="max-head-plus-one"),
        pytest.param(answer_raw(b"HTTP/1.1 101 Switching Protocols\r\nX-Big: " + b"b" * (4 * MAX_HEAD) + b"\r\n\r\n"), id="four-times-max-head"),
        pytest.param(answer_raw(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Many: m\r\n" * (MAX_HEAD // 10)), id="many-headers-no-end"),
    ],
)
def test_head_longer_than_max_head_raises(serve, respond) -> None:
    server = serve(respond)
    # the server is still there: the limit is what stopped the read, not an EOF
    with pytest.raises(HandshakeError):
        connect(server)
    assert server.saw_eof.wait(TIMEOUT), "open_websocket did not close the socket"
    server.check()


# --------------------------------------------------------------------------- TLS (wss)


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for 127.0.0.1."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOOPBACK).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_wss_upgrade_uses_websocket_client_reader(serve, tls_contexts) -> None:
    server_ctx, client_ctx = tls_contexts
    server = serve(answer_101(("Sec-WebSocket-Protocol: cranker_1.0", "Set-Cookie: a=1",
                               "Set-Cookie: b=2"), tail=BINARY_ABC), tls=server_ctx)
    ws = connect(server, sslopt={"context": client_ctx})
    try:
        assert isinstance(ws.sock, ssl.SSLSocket)
        assert ws.getstatus() == 101
        assert ws.getheaders()["sec-websocket-protocol"] == "cranker_1.0"
        assert ws.getheaders()["set-cookie"] == "a=1; b=2"
        opcode, frame = ws.recv_data_frame(True)  # still in the TLS buffer after the head
        assert (opcode, frame.data) == (2, b"abc")
    finally:
        ws.shutdown()
    server.check()
    assert server.request.headers["x-crank-test"] == "present"


def test_wss_bad_status_raises(serve, tls_contexts) -> None:
    server_ctx, client_ctx = tls_contexts
    server = serve(answer_status(403, "Forbidden"), tls=server_ctx)
    with pytest.raises(RegistrationRefused) as info:
        connect(server, sslopt={"context": client_ctx})
    assert info.value.status_code == 403
    assert server.saw_eof.wait(TIMEOUT), "open_websocket did not close the socket"
    server.check()


def test_wss_untrusted_certificate_raises_tls_error(serve, tls_contexts) -> None:
    server_ctx, _ = tls_contexts
    server = serve(answer_101(), tls=server_ctx)
    with pytest.raises(TlsError) as info:  # a context that does not trust the test CA
        connect(server, sslopt={"context": ssl.create_default_context()})
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert str(info.value) == str(info.value.__cause__)  # the text the log line shows
    server.stop()


def test_wss_wrong_accept_raises(serve, tls_contexts) -> None:
    server_ctx, client_ctx = tls_contexts
    server = serve(answer_wrong_accept, tls=server_ctx)
    with pytest.raises(HandshakeError):
        connect(server, sslopt={"context": client_ctx})
    server.check()


# --------------------------------------------------------------------------- read_response_head


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_read_response_head_leaves_the_rest_in_the_socket(pair) -> None:
    reader, writer = pair
    writer.sendall(b"HTTP/1.1 101 Go\r\nA: 1\r\n\r\nrest of the stream")
    assert read_response_head(reader) == (101, {"a": "1"}, "Go")
    assert reader.recv(100) == b"rest of the stream"


def test_read_response_head_across_many_writes(pair) -> None:
    reader, writer = pair
    head = b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n"
    done: dict[str, object] = {}

    def read() -> None:
        try:
            done["head"] = read_response_head(reader)
        except BaseException as err:
            done["error"] = err

    thread = threading.Thread(target=read, name="test-read-head", daemon=True)
    thread.start()
    try:
        for byte in head + b"\x82":
            writer.sendall(bytes([byte]))
    finally:
        thread.join(TIMEOUT + 5)
    assert not thread.is_alive()
    assert done == {"head": (101, {"upgrade": "websocket"}, "Switching")}
    assert reader.recv(10) == b"\x82"


class Trickle:
    """A socket whose ``recv`` (peeking or not) returns at most ``step`` bytes."""

    def __init__(self, sock: socket.socket, step: int) -> None:
        self._sock = sock
        self.step = step

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._sock.recv(min(bufsize, self.step), flags)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        return self._sock.recv_into(buffer, min(nbytes or len(buffer), self.step), flags)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 6, 7, 13])
def test_read_response_head_split_at_every_position(pair, step: int) -> None:
    """Every split of the head, the blank line included, across reads of ``step`` bytes."""
    reader, writer = pair
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-A: b\r\n\r\n"
    writer.sendall(head + BINARY_ABC)
    assert read_response_head(Trickle(reader, step)) == (
        101, {"upgrade": "websocket", "x-a": "b"}, "Switching Protocols")
    assert reader.recv(100) == BINARY_ABC


def test_read_response_head_eof_raises_connection_closed(pair) -> None:
    reader, writer = pair
    writer.sendall(b"HTTP/1.1 101 Switching\r\n")
    writer.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionLost):
        read_response_head(reader)


# --------------------------------------------------------------------------- parse_response_head

PARSE_ROWS = [
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", (101, {}, "Switching Protocols"), id="status-and-reason"),
    pytest.param(b"HTTP/1.1 101\r\n\r\n", (101, {}, ""), id="no-reason"),
    pytest.param(b"HTTP/1.1 403 Forbidden Here\r\n\r\n", (403, {}, "Forbidden Here"), id="reason-with-spaces"),
    pytest.param(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", (101, {"upgrade": "websocket", "connection": "Upgrade"}, "OK"), id="headers"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-MiXeD-CaSe: Keep Value\r\n\r\n", (101, {"x-mixed-case": "Keep Value"}, "OK"), id="name-lower-cased-value-kept"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-A:   padded   \r\n\r\n", (101, {"x-a": "padded"}, "OK"), id="value-stripped"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-A:\r\n\r\n", (101, {"x-a": ""}, "OK"), id="empty-value"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-Url: http://h:1/p\r\n\r\n", (101, {"x-url": "http://h:1/p"}, "OK"), id="colon-in-value"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-A: 1\r\nx-a: 2\r\n\r\n", (101, {"x-a": "2"}, "OK"), id="repeated-header-last-wins"),
    pytest.param(b"HTTP/1.1 101 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n", (101, {"set-cookie": "a=1; b=2"}, "OK"), id="set-cookie-joined"),
    pytest.param(b"HTTP/1.1 101 OK\r\nSet-Cookie: a=1\r\nX-B: 1\r\nSet-Cookie: b=2\r\nSet-Cookie: c=3\r\n\r\n", (101, {"set-cookie": "a=1; b=2; c=3", "x-b": "1"}, "OK"), id="set-cookie-three"),
    pytest.param("HTTP/1.1 101 OK\r\nX-Name: caf\u00e9\r\n\r\n".encode(), (101, {"x-name": "caf\u00e9"}, "OK"), id="utf8-value"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-A: 1", (101, {"x-a": "1"}, "OK"), id="without-final-blank-line"),
]


@pytest.mark.parametrize(("head", "expected"), PARSE_ROWS)
def test_parse_response_head(head: bytes, expected: tuple) -> None:
    assert parse_response_head(head) == expected


@pytest.mark.parametrize(("head", "expected"), PARSE_ROWS)
def test_parse_response_head_agrees_with_websocket_client(pair, head: bytes, expected: tuple) -> None:
    """websocket-client's own reader (``_http.read_headers``) gives the same for a full head."""
    from websocket import _http

    reader, writer = pair
    if not head.endswith(b"\r\n\r\n"):
        head += b"\r\n\r\n"
    writer.sendall(head)
    status, headers, reason = _http.read_headers(reader)
    assert (status, headers, reason or "") == expected


PARSE_ERROR_ROWS = [
    pytest.param(b"HTTP/1.1 abc Nope\r\n\r\n", "Invalid status line", id="status-not-a-number"),
    pytest.param(b"HTTP/1.1\r\n\r\n", "Invalid status line", id="status-missing"),
    pytest.param(b"\r\n\r\n", "Invalid status line", id="empty-status-line"),
    pytest.param(b"", "Invalid status line", id="empty-head"),
    pytest.param(b"HTTP/1.1 101 OK\r\nNoColonHere\r\n\r\n", "Invalid header", id="header-without-colon"),
    pytest.param(b"HTTP/1.1 101 OK\r\nX-A: \xff\xfe\r\n\r\n", "not valid UTF-8", id="invalid-utf8-value"),
    pytest.param(b"HTTP/1.1 101 \xc3\x28\r\n\r\n", "not valid UTF-8", id="invalid-utf8-reason"),
]


@pytest.mark.parametrize(("head", "message"), PARSE_ERROR_ROWS)
def test_parse_response_head_rejects(head: bytes, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        parse_response_head(head)


def test_max_head_is_64_kib() -> None:
    assert MAX_HEAD == 65536


# --------------------------------------------------------------------------- real router


@pytest.mark.parametrize(
    ("protocols", "echo"),
    [pytest.param(("1.0",), "cranker_1.0", id="v1"), pytest.param(("3.0",), "cranker_3.0", id="v3")],
)
def test_upgrade_against_the_real_router(router, protocols, echo) -> None:
    url = (f"ws://{LOOPBACK}:{router.registration_port}/register/"
           "?connectorInstanceID=x&componentName=y")
    ws = upgrade(url, timeout=TIMEOUT, header=handshake_headers("myroute", protocols))
    try:
        assert ws.getstatus() == 101
        headers = ws.getheaders()
        assert headers["sec-websocket-protocol"] == echo
        if protocols == ("1.0",):
            assert headers["crankerprotocol"] == "1.0"  # the legacy v1 answer header
        wait_for(lambda: router.idle_sockets("myroute") >= 1, what="socket registered on myroute")
    finally:
        ws.close(timeout=2)


# --------------------------------------------------------------------------- HTTP proxy


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 for one tunnel: records the CONNECT line, then
    relays bytes both ways."""

    def __init__(self) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.request = b""
        self.thread = threading.Thread(target=self._run, name="test-connect-proxy", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.listener, self.listener.accept()[0] as client:
            client.settimeout(TIMEOUT)
            while b"\r\n\r\n" not in self.request:
                self.request += client.recv(4096)
            host, _, port = self.request.split(b" ")[1].decode().rpartition(":")
            with socket.create_connection((host, int(port)), TIMEOUT) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=self._pump, args=(upstream, client),
                                        name="test-connect-proxy-pump", daemon=True)
                pump.start()
                self._pump(client, upstream)
                pump.join(TIMEOUT)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def test_http_proxy_from_the_environment_is_used(serve, monkeypatch) -> None:
    """As websocket.create_connection does: http_proxy (ws://) carries the upgrade through a
    CONNECT tunnel, with its credentials; no_proxy not naming the host."""
    server = serve(answer_101(tail=BINARY_ABC))
    proxy = ConnectProxy()
    monkeypatch.setenv("http_proxy", f"http://user:pw@{LOOPBACK}:{proxy.port}")
    monkeypatch.setenv("no_proxy", "example.invalid")
    ws = connect(server)
    try:
        opcode, frame = ws.recv_data_frame(True)
        assert (opcode, frame.data) == (2, b"abc")
    finally:
        ws.shutdown()
    proxy.thread.join(TIMEOUT)
    server.check()
    lines = proxy.request.decode().split("\r\n")
    assert lines[0] == f"CONNECT {LOOPBACK}:{server.port} HTTP/1.1"
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'user:pw').decode()}" in lines


def test_loopback_bypasses_the_proxy_without_no_proxy(serve, monkeypatch) -> None:
    server = serve(answer_101())
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    connect(server).shutdown()
    server.check()


def test_a_change_of_the_proxy_variables_is_seen_at_the_next_connection(serve, monkeypatch):
    """The proxy chosen is kept between a v1 connector's many connections, but only while the
    environment's proxy variables stay the same: direct, then through the proxy, then direct."""
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "example.invalid")
    first = serve(answer_101())
    connect(first).shutdown()
    first.check()
    proxy = ConnectProxy()
    monkeypatch.setenv("http_proxy", f"http://{LOOPBACK}:{proxy.port}")
    second = serve(answer_101())
    connect(second).shutdown()
    proxy.thread.join(TIMEOUT)
    second.check()
    assert proxy.request.startswith(f"CONNECT {LOOPBACK}:{second.port} ".encode())
    monkeypatch.delenv("http_proxy")
    third = serve(answer_101())
    connect(third).shutdown()  # the proxy is gone: this works only when dialled direct
    third.check()
