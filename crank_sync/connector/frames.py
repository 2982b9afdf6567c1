"""Websocket frames on the connector's side, with few system calls.

websocket-client reads a frame with two or three ``recv`` calls (header, extended length,
payload) and draws every mask key from ``os.urandom``. Under load each call is a GIL hand-off.
A v3 socket has one reader thread that owns the receiving side, so :class:`FrameReader` reads
what has arrived in one call and parses every frame in it; :func:`mask_keys` hands out keys
from a 4 KiB block of ``os.urandom`` per thread. A v1 socket reads its request body the same
way, then hands the socket back (:meth:`FrameReader.finish`).
"""
from __future__ import annotations

import os
import select
import ssl
import threading
import time

import websocket

from ..masking import xor_mask
from ..tlsio import recv_nowait
from ..wsframe import encode_head, parse_head

__all__ = ["FrameReader", "encode_frame", "mask_keys"]

#: Bytes asked for per read; under malloc's mmap threshold (128 KiB), above which every read
#: would map and unmap its buffer.
RECV_BYTES = 64 * 1024
#: A message longer than this closes the socket with 1009.
MAX_MESSAGE = 64 * 1024 * 1024

_OP_CONT, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA


class _MaskKeys(threading.local):
    def __init__(self) -> None:
        self.block = b""
        self.pos = 0

    def __call__(self, length: int = 4) -> bytes:
        if self.pos + length > len(self.block):
            self.block = os.urandom(4096)
            self.pos = 0
        key = self.block[self.pos:self.pos + length]
        self.pos += length
        return key


#: Cryptographically random mask keys, four bytes at a time, one system call per 1,024 keys.
mask_keys = _MaskKeys()


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (what ``ABNF.create_frame(...).format()`` gives)."""
    key = mask_keys()
    return b"".join((encode_head(opcode, len(payload), True), key, xor_mask(key, payload)))


class FrameReader:
    """Reads complete messages from the router's side of ``ws`` (unmasked server frames).

    Pings are answered, pongs dropped, and a close frame is answered and returned. The socket's
    timeout applies to each read; a timeout raises ``websocket.WebSocketTimeoutException``.
    """

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self._buf = bytearray()
        self._pos = 0
        self._parts: list[bytes] = []
        self._opcode = 0

    def recv(self) -> tuple[int, bytes]:
        """The next ``(opcode, payload)``: a whole text or binary message, or a close frame."""
        while True:
            frame = self._next_frame()
            if frame is None:
                self._fill()
                continue
            fin, opcode, payload = frame
            if opcode >= _OP_CLOSE:
                if opcode == _OP_CLOSE:
                    self._answer_close()
                    return opcode, payload
                if opcode == _OP_PING:
                    self.ws.pong(payload)
                elif opcode != _OP_PONG:
                    raise websocket.WebSocketProtocolException(f"unknown opcode {opcode:#x}")
                continue
            message = self._assemble(fin, opcode, payload)
            if message is not None:
                return message

    def _assemble(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode == _OP_CONT:
            if not self._opcode:
                raise websocket.WebSocketProtocolException("continuation without a start")
            self._parts.append(payload)
            if sum(len(p) for p in self._parts) > MAX_MESSAGE:
                raise websocket.WebSocketPayloadException("message too long")
            if not fin:
                return None
            opcode, self._opcode = self._opcode, 0
            payload = b"".join(self._parts)
            self._parts = []
            return opcode, payload
        if opcode not in (_OP_TEXT, _OP_BINARY):
            raise websocket.WebSocketProtocolException(f"unknown opcode {opcode:#x}")
        if self._opcode:
            raise websocket.WebSocketProtocolException("new message inside a fragmented one")
        if fin:
            return opcode, payload
        self._opcode = opcode
        self._parts = [payload]
        return None

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        head = parse_head(buf, self._pos)
        if head is None:
            return None
        if head.rsv:
            raise websocket.WebSocketProtocolException("reserved bits set")
        if head.masked:
            raise websocket.WebSocketProtocolException("masked frame from the router")
        if head.opcode & 0x08 and (not 0 <= head.length <= 125 or not head.fin):
            raise websocket.WebSocketProtocolException("control frame fragmented or too long")
        if head.length < 0:
            return None
        if head.length > MAX_MESSAGE:
            raise websocket.WebSocketPayloadException("frame too long")
        end = head.end
        if end > len(buf):
            return None
        with memoryview(buf) as view:  # one copy (a bytearray slice would be two)
            payload = bytes(view[head.start:end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return head.fin, head.opcode, payload

    def finish(self) -> list[tuple[int, bytes]]:
        """Hand the socket back: what arrived after the last message returned, as whole
        messages (and a close, answered), reading the socket only for the rest of one already
        begun and never beyond it, so that nothing is left in this reader's buffer. Pings
        among them are answered."""
        rest: list[tuple[int, bytes]] = []
        while self._pos < len(self._buf) or self._opcode:
            frame = self._next_frame()
            if frame is None:
                self._fill(self._missing())
                continue
            fin, opcode, payload = frame
            if opcode == _OP_CLOSE:
                self._answer_close()
                rest.append((opcode, payload))
            elif opcode == _OP_PING:
                self.ws.pong(payload)
            elif opcode != _OP_PONG:
                message = self._assemble(fin, opcode, payload)
                if message is not None:
                    rest.append(message)
        return rest

    def _missing(self) -> int:
        """Bytes still to come of the frame begun at the read position (its head first)."""
        available = len(self._buf) - self._pos
        if available < 2:
            return 2 - available
        head = parse_head(self._buf, self._pos)
        assert head is not None
        if head.length < 0:
            return (4 if self._buf[self._pos + 1] & 0x7F == 126 else 10) - available
        return head.end - len(self._buf)

    def _fill(self, limit: int = RECV_BYTES) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        sock = self.ws.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("socket is already closed")
        try:
            if isinstance(sock, ssl.SSLSocket):
                data = self._recv_tls(sock, limit)
            else:
                data = sock.recv(limit)
        except TimeoutError as err:  # socket.timeout, and SSL read timeouts
            raise websocket.WebSocketTimeoutException(str(err)) from err
        if not data:
            raise websocket.WebSocketConnectionClosedException("router closed the connection")
        self._buf += data

    def _recv_tls(self, sock: ssl.SSLSocket, limit: int) -> bytes:
        """A TLS read that never runs beside another thread's write (:mod:`crank_sync.tlsio`):
        every writer holds ``ws.lock``; the wait for bytes happens outside it."""
        timeout = sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            if not sock.pending():
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not poller.poll(None if wait is None else wait * 1000):
                    raise TimeoutError("timed out")
            with self.ws.lock:
                data = recv_nowait(sock, limit)
            if data is not None:
                return data
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")

    def _answer_close(self) -> None:
        try:
            self.ws.send_close()
        except (websocket.WebSocketException, OSError):
            pass
