"""The connector's end of a router websocket: websocket-client's ``WebSocket`` behind the few
calls the connector makes, with its errors and the socket's translated here.

The socket workers, the v3 reader and streams and the cancel watcher catch crank_sync errors
only: a read that times out raises :class:`~crank_sync.errors.ReadTimeout`, a frame against
the protocol :class:`~crank_sync.errors.FrameError`, anything else that fails (a reset, the
router closing the connection, a write to a socket already shut down)
:class:`~crank_sync.errors.ConnectionLost`, with websocket-client's or the socket's error as
the ``__cause__``. The upgrade's own errors are translated by
:func:`~crank_sync.connector.handshake.open_websocket`.

Writes go through websocket-client's send lock (:attr:`ConnectorWebSocket.lock`), so the
frames of several threads (a v3 socket's reader and its streams) never interleave.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

import websocket

from ..errors import ConnectionLost, FrameError, ReadTimeout, WebSocketError
from ..ws.frames import encode_frame

__all__ = ["ConnectorWebSocket", "translated"]

#: What websocket-client's calls raise besides our own errors.
_FOREIGN = (websocket.WebSocketException, OSError)
_BAD_FRAME = (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException)
_TIMED_OUT = (websocket.WebSocketTimeoutException, TimeoutError)


def translated(err: BaseException, *, reading: bool = False) -> WebSocketError:
    """websocket-client's or the socket's ``err`` as a crank_sync error: ReadTimeout for a read
    (``reading``) that timed out, FrameError for a frame against the protocol, else
    ConnectionLost (a write that timed out included). Its text is ``err``'s."""
    text = str(err) or repr(err)
    if reading and isinstance(err, _TIMED_OUT):
        return ReadTimeout(text)
    if isinstance(err, _BAD_FRAME):
        return FrameError(1002, text)
    return ConnectionLost(text)


class ConnectorWebSocket:
    """One registered websocket to a router, made by
    :func:`~crank_sync.connector.handshake.open_websocket`."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws

    @property
    def sock(self) -> socket.socket | None:
        """The socket (an ``ssl.SSLSocket`` on wss), None once shut down: to wait on, and
        for :class:`~crank_sync.connector.frames.FrameReader`'s reads."""
        return self._ws.sock

    @property
    def lock(self) -> threading.Lock:
        """websocket-client's send lock: held by every write (and, on TLS, by every read)."""
        return self._ws.lock

    @property
    def headers(self) -> dict[str, str]:
        """The headers of the upgrade's answer, names in lower case."""
        return self._ws.getheaders() or {}

    def settimeout(self, timeout: float) -> None:
        try:
            self._ws.settimeout(timeout)
        except _FOREIGN as err:
            raise translated(err) from err

    def recv_frame(self) -> tuple[int, bytes]:
        """The next message or control frame, as ``(opcode, payload)``, through
        websocket-client's reader; a ping is answered and a close frame answered (both are
        returned too)."""
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except _FOREIGN as err:
            raise translated(err, reading=True) from err
        return opcode, frame.data

    def ping(self) -> None:
        try:
            self._ws.ping()
        except _FOREIGN as err:
            raise translated(err) from err

    def pong(self, payload: bytes) -> None:
        try:
            self._ws.pong(payload)
        except _FOREIGN as err:
            raise translated(err) from err

    def send_binary(self, data: bytes) -> None:
        try:
            self._ws.send_binary(data)
        except _FOREIGN as err:
            raise translated(err) from err

    def send_frames(self, messages: Sequence[tuple[int, bytes]]) -> None:
        """Send ``(opcode, payload)`` messages, each one complete websocket message, in order
        and with one write: a small response is a head, a body chunk and an end marker, three
        locked writes (and three wake-ups at the router) when sent one by one."""
        data = b"".join([encode_frame(opcode, payload, masked=True)
                         for opcode, payload in messages])
        with self._ws.lock:
            sock = self._ws.sock
            if sock is None:
                raise ConnectionLost("socket is already closed")
            try:
                sock.sendall(data)
            except OSError as err:
                raise translated(err) from err

    def send_close(self, code: int = 1000, reason: bytes = b"") -> None:
        """Send a close frame, without waiting for the router's."""
        try:
            self._ws.send_close(code, reason)
        except _FOREIGN as err:
            raise translated(err) from err

    def close(self, code: int, reason: str, timeout: float) -> None:
        """Send a close frame and wait up to ``timeout`` for the router's, then close the
        socket (websocket-client's close handshake)."""
        try:
            self._ws.close(status=code, reason=reason.encode(), timeout=timeout)
        except _FOREIGN as err:
            raise translated(err) from err

    def shutdown(self) -> None:
        """Close at once, waking a thread blocked in a read (``close()`` alone does not, on
        Linux); never raises."""
        sock = self._ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._ws.shutdown()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
