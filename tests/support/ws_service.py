"""A real websocket service (simple-websocket on a ThreadingHTTPServer, TLS optional) and a
client on websocket-client: the two ends of a websocket through the tunnel.

Endpoints, under any first path segment: ``/r/echo`` echoes each message; ``/r/forbidden``
answers 403; ``/r/close/CODE`` closes with CODE after the first message; ``/r/vanish`` drops
the TCP connection after the first message. Every handshake and every close the service saw
is recorded.
"""
from __future__ import annotations

import http.server
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import simple_websocket

from .sockets import LOOPBACK


@dataclass
class Handshake:
    path: str
    headers: dict[str, str]


@dataclass
class Seen:
    handshakes: list[Handshake] = field(default_factory=list)
    #: (code, reason) of each connection's end as the service saw it.
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    open: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        seen: Seen = self.server.seen
        with seen.lock:
            seen.handshakes.append(Handshake(self.path, {k.lower(): v for k, v in
                                                         self.headers.items()}))
        endpoint = self.path.split("?", 1)[0].split("/")[2:3]
        if endpoint == ["forbidden"] or self.headers.get("Upgrade", "").lower() != "websocket":
            body = b"no websocket here\n"
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        environ = {"werkzeug.socket": self.connection, "SERVER_PROTOCOL": "HTTP/1.1",
                   "REQUEST_METHOD": "GET", "PATH_INFO": self.path}
        for name, value in self.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        ws = simple_websocket.Server(environ, subprotocols=["chat", "superchat"],
                                     max_message_size=None, ping_interval=None)
        self.close_connection = True
        with seen.lock:
            seen.open += 1
        try:
            self._serve(ws, self.path.split("?", 1)[0].split("/")[2:])
        finally:
            with seen.lock:
                seen.open -= 1

    def _serve(self, ws: simple_websocket.Server, parts: list[str]) -> None:
        seen: Seen = self.server.seen
        try:
            while True:
                msg = ws.receive(timeout=60)
                if msg is None:
                    continue
                if parts[:1] == ["close"]:
                    ws.close(int(parts[1]), "service says bye")
                    break
                if parts[:1] == ["vanish"]:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    break
                ws.send(msg)
        except simple_websocket.ConnectionClosed as err:
            with seen.lock:
                seen.closes.append((err.reason, err.message or ""))
            return
        with seen.lock:
            seen.closes.append((None, "service ended it"))


class WebSocketService:
    """The service, on 127.0.0.1:0; ``tls`` is (certificate file, key file) for wss."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.seen = Seen()
        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self.server.daemon_threads = True
        self.server.seen = self.seen  # type: ignore[attr-defined]
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="test-ws-service", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
