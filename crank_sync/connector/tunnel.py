"""The connector's side of websockets through the tunnel (docs/websocket-tunnel.rst).

A websocket upgrade from a router that accepted the capability is replayed on a socket of its
own to the service (TLS for an ``https`` target), with the client's head; the standard
library's ``http.client`` reads the answer. A 101 goes back to the router and from then on the
socket's bytes are relayed as they are, both ways, until either side ends; anything else is
relayed as an ordinary response.
"""
from __future__ import annotations

import http.client
import itertools
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ReadTimeout, TargetError, WebSocketError
from ..protocol import RequestHead, ResponseHead, encode_response_head, tunnel, v3
from ..ws.frames import Opcode
from ..ws.tls import held_bytes, recv_locked
from .target import Cancel, TargetClient, _Cancelled
from .websocket import ConnectorWebSocket

if TYPE_CHECKING:
    from .v3 import ConnectorStream

log = logging.getLogger(__name__)

_ids = itertools.count(1)
_READ_SIZE = 64 * 1024
#: How long the second thread of a tunnel may take to end once the tunnel is over.
_JOIN_TIMEOUT = 5.0

is_websocket_upgrade = tunnel.is_websocket_upgrade


class Service:
    """The socket to the service after its 101: read by one thread, written by another."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.lock = threading.RLock()  # OpenSSL: never a read beside a write (ws/tls.py)
        self._leftover = leftover
        self.id = next(_ids)

    def recv(self) -> bytes:
        """The next bytes from the service, ``b""`` at its end; TimeoutError when it is
        quiet for the socket's timeout."""
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return data
        try:
            return recv_locked(self.sock, _READ_SIZE, self.lock)
        except TimeoutError:
            raise
        except OSError:
            return b""

    def pieces(self, size: int) -> Iterator[bytes]:
        """The service's bytes in pieces of at most ``size``, until its end (a quiet service
        is waited for as long as it takes: the router ends an idle websocket)."""
        while True:
            try:
                data = self.recv()
            except TimeoutError:
                continue
            if not data:
                return
            for start in range(0, len(data), size):
                yield data[start:start + size]

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def shutdown(self) -> None:
        """Wake the reader and end the connection (both ways)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


class Refusal:
    """The service's answer other than 101, as a target response the workers relay."""

    def __init__(self, sock: socket.socket, resp: http.client.HTTPResponse) -> None:
        self._sock, self._resp = sock, resp
        self.status: int = resp.status
        self.reason: str | None = resp.reason

    @property
    def headers(self) -> Any:
        return self._resp.headers

    @property
    def length_remaining(self) -> int | None:
        return self._resp.length

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        try:
            return self._resp.read1(amt or _READ_SIZE)
        except (OSError, http.client.HTTPException) as err:
            raise TargetError("connection closed", repr(err)) from err

    def close(self) -> None:
        self._resp.close()
        self._sock.close()

    def release_conn(self) -> None:
        self.close()


class _Attached:
    """What :class:`~crank_sync.connector.target.Cancel` shuts down: the service's socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def open_service(target: TargetClient, head: RequestHead,
                 cancel: Cancel) -> tuple[Service | None, ResponseHead | Refusal]:
    """Send the upgrade to the service: ``(Service, its 101 head)``, or ``(None, Refusal)``.
    Raises TargetError when the service cannot be reached or answers no HTTP."""
    sock = target.open_socket()
    cancel.attach(_Attached(sock))  # type: ignore[arg-type]
    try:
        lines = [f"{head.method} {target.base_path}{head.target} HTTP/1.1\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in head.headers]
        sock.sendall(("".join(lines) + "\r\n").encode("latin-1"))
        resp = http.client.HTTPResponse(sock, method=head.method)
        resp.begin()
    except (OSError, http.client.HTTPException, UnicodeError) as err:
        sock.close()
        raise TargetError("connection closed" if isinstance(err, http.client.HTTPException)
                          else "connection refused" if isinstance(err, ConnectionRefusedError)
                          else "connection failed", repr(err)) from err
    if resp.status != 101:
        return None, Refusal(sock, resp)
    answer = ResponseHead(status=101, reason=resp.reason or "Switching Protocols",
                          headers=tuple(resp.headers.items()))
    return Service(sock, held_bytes(resp.fp, sock)), answer


def start_thread(name: str, fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    return thread


def serve_v1(target: TargetClient, ws: ConnectorWebSocket, head: RequestHead,
             message_limit: int, ended: Callable[[], None]) -> Refusal | None:
    """Tunnel one upgrade over a v1 socket; the service's refusal is returned to relay.
    ``ended()`` is called once a tunnel that opened is over."""
    cancel = Cancel()
    service, answer = open_service(target, head, cancel)
    if service is None:
        assert isinstance(answer, Refusal)
        return answer
    assert isinstance(answer, ResponseHead)
    ws.send_frames([(Opcode.TEXT, encode_response_head(answer).encode())])
    log.info("websocket %d open: %s", service.id, head.label)

    def down() -> None:  # the service's bytes to the router, then a close
        code, reason = 1000, b"service closed"
        try:
            for piece in service.pieces(message_limit):
                ws.send_frames([(Opcode.BINARY, piece)])
        except WebSocketError as err:
            log.debug("websocket %d: router side lost: %r", service.id, err)
            return
        try:
            ws.send_close(code, reason)
        except WebSocketError:
            pass

    thread = start_thread(f"crank-connector-ws-down-{service.id}", down)
    try:
        _pump_v1_up(ws, service)
    finally:
        service.close()
        thread.join(_JOIN_TIMEOUT)
        ws.shutdown()
        log.info("websocket %d closed", service.id)
        ended()
    return None


def _pump_v1_up(ws: ConnectorWebSocket, service: Service) -> None:
    """The router's messages to the service until the router closes the socket."""
    while True:
        try:
            opcode, payload = ws.recv_frame()
        except ReadTimeout:
            continue  # an idle websocket: the router ends it when it has been idle too long
        except WebSocketError:
            return
        if opcode == Opcode.CLOSE:
            return
        if opcode == Opcode.BINARY and payload:
            try:
                service.send(payload)
            except OSError:
                return


# -- v3: one stream per websocket --------------------------------------------------------------


def serve_v3(stream: ConnectorStream, head: RequestHead, chunk_size: int,
             ended: Callable[[], None]) -> Refusal | None:
    """Tunnel an upgrade on ``stream`` with two threads of the connector's cache, not the v3
    pool (a websocket may last hours); returns the service's refusal to relay. ``ended()`` is
    called by the down thread once a tunnel that opened is over."""
    link = stream.sock.link
    assert isinstance(link.target, TargetClient)
    service, answer = open_service(link.target, head, stream.target_cancel)
    if service is None:
        assert isinstance(answer, Refusal)
        return answer
    assert isinstance(answer, ResponseHead)
    try:
        stream.send_all(stream.head_frames(encode_response_head(answer), False))
        log.info("websocket %d open on stream %d: %s", service.id, stream.id, head.label)
        link.threads.submit(_v3_down, stream, service, chunk_size, ended)
        stream.handed_off = True  # the down thread ends the stream
        link.threads.submit(_v3_up, stream, service)
    except BaseException:
        if not stream.handed_off:
            service.close()
        raise
    return None


def _v3_down(stream: ConnectorStream, service: Service, chunk_size: int,
             ended: Callable[[], None]) -> None:
    """The service's bytes to the router, as the window allows; END_STREAM at their end."""
    try:
        for piece in service.pieces(chunk_size):
            _wait_window(stream)
            stream.send_all([stream.data_frame(piece)])
        stream.send_all([stream.data_frame(b"", end_stream=True)])
    except (_Cancelled, WebSocketError) as err:
        log.debug("websocket %d: the router's side ended: %r", service.id, err)
    except Exception:  # noqa: BLE001 - never lose a thread silently
        log.exception("websocket %d failed", service.id)
        stream.reset(v3.RST_TARGET_FAILED, "connector error")
    finally:
        service.close()
        stream.cancel()  # the up thread stops waiting for the router
        stream.sock.end_stream(stream)
        log.info("websocket %d closed", service.id)
        ended()


def _wait_window(stream: ConnectorStream) -> None:
    """A websocket's client may read slowly for as long as it likes: wait until the window
    opens or the router ends the stream."""
    while True:
        try:
            return stream.wait_window(stream.sock.link.config.ping_interval)
        except _Cancelled:
            if stream.cancelled:
                raise


def _v3_up(stream: ConnectorStream, service: Service) -> None:
    """The router's DATA to the service, acknowledged once written, until END_STREAM."""
    try:
        for data in stream.request_body(stream.sock.link.config.ping_interval, patient=True):
            service.send(data)
    except (_Cancelled, OSError, WebSocketError):
        pass
    finally:
        service.shutdown()  # the down direction ends too
