"""Scripted Cranker peers on real sockets: a router stand-in for connector tests
(:class:`ScriptedRouter`, on simple-websocket) and a v1 connector stand-in for router tests
(:class:`FakeConnector`, on websocket-client)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .sockets import LOOPBACK


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
