"""The connector's side of Cranker v3: one reader thread per socket, streams on a worker pool.

The reader (the socket's own thread) decodes frames and hands them to streams; it never waits
for a target. Each stream replays its request on a pool thread and writes its frames to the
socket (websocket-client serialises sends), honouring the router's WINDOW_UPDATEs.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import websocket
from websocket import ABNF

from ..errors import RemoteProtocolError, TargetError
from ..protocol import ResponseHead, encode_response_head, parse_request_text, v3
from ..protocol.limits import DEFAULT_MESSAGE_LIMIT, V3_OVERHEAD
from .frames import FrameReader
from .target import Cancel, failure_reason, iter_response
from .wsio import body_complete, send_frames, small_body

if TYPE_CHECKING:
    from .connector import RouterLink

log = logging.getLogger(__name__)

_WS_ERRORS = (websocket.WebSocketException, OSError)
_TARGET_ERRORS = (TargetError, OSError)
_END = object()


class _Cancelled(Exception):
    pass


class ConnectorStream:
    """One request on a v3 socket, as the connector serves it."""

    def __init__(self, sock: V3Socket, stream_id: int) -> None:
        self.sock = sock
        self.id = stream_id
        self.headers = v3.HeaderAssembler()
        self.window = v3.SendWindow()
        self._cond = threading.Condition()
        self._body: collections.deque[object] = collections.deque()
        self.cancelled = False
        self.target_cancel = Cancel()
        #: WINDOW_UPDATE for a bodiless request's HEADER: nobody waits for it, so it leaves
        #: with the first response frames instead of in a write of its own.
        self.deferred_ack: bytes | None = None

    # reader thread side
    def feed_body(self, data: bytes, end: bool) -> None:
        with self._cond:
            if data:
                self._body.append(data)
            if end:
                self._body.append(_END)
            self._cond.notify_all()

    def acked(self, n: int) -> None:
        with self._cond:
            if self.window.acked(n):  # only a resumed sender needs waking
                self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()
        self.target_cancel.cancel()  # unblocks a pool thread waiting on the target

    # pool thread side
    def _send(self, frame: bytes) -> None:
        if self.cancelled:
            raise _Cancelled()
        self.sock.ws.send_binary(frame)

    def _request_body(self, timeout: float) -> Iterator[bytes]:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._body or self.cancelled, timeout):
                    raise _Cancelled("no request body data from the router in time")
                if self.cancelled:
                    raise _Cancelled()
                item = self._body.popleft()
            if item is _END:
                return
            assert isinstance(item, bytes)
            yield item
            # urllib3 asks for the next chunk only once this one is written to the target
            self._send(v3.window_update_frame(self.id, len(item)))

    def _wait_window(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: not self.window.paused or self.cancelled,
                                       timeout):
                raise _Cancelled("no WINDOW_UPDATE from the router in time")
            if self.cancelled:
                raise _Cancelled()

    def _count(self, payload: int) -> None:
        with self._cond:
            self.window.sent(payload)

    def _send_all(self, frames: list[bytes], counted: bool = False) -> None:
        """Send v3 messages with one write (payloads counted by the caller unless told)."""
        if self.cancelled:
            raise _Cancelled()
        if counted:
            self._count(sum(len(f) - 6 for f in frames))
        frames = self._with_deferred_ack(frames)
        if frames:
            send_frames(self.sock.ws, [(ABNF.OPCODE_BINARY, f) for f in frames])

    def _with_deferred_ack(self, frames: list[bytes]) -> list[bytes]:
        ack, self.deferred_ack = self.deferred_ack, None
        return frames if ack is None else [ack, *frames]

    def serve(self, text: str, has_body: bool) -> None:
        cfg = self.sock.link.config
        try:
            self._serve(text, has_body, cfg.idle_timeout,
                        min(cfg.chunk_size, self.sock.message_limit - V3_OVERHEAD))
        except _Cancelled:
            log.debug("stream %d cancelled", self.id)
        except _WS_ERRORS as err:
            log.info("router socket lost while serving stream %d: %r", self.id, err)
        except Exception:  # noqa: BLE001 - never lose a pool thread silently
            log.exception("stream %d failed", self.id)
            self._reset(v3.RST_TARGET_FAILED, "connector error")
        finally:
            self.sock.end_stream(self)

    def _reset(self, code: int, message: str) -> None:
        frames = self._with_deferred_ack([v3.rst_frame(self.id, code, message)])
        try:
            send_frames(self.sock.ws, [(ABNF.OPCODE_BINARY, f) for f in frames])
        except _WS_ERRORS:
            pass

    def _serve(self, text: str, has_body: bool, idle: float, chunk_size: int) -> None:
        try:
            head = parse_request_text(text, has_body)
        except RemoteProtocolError as err:
            log.warning("bad request head on stream %d: %s", self.id, err)
            self._reset(v3.RST_TARGET_FAILED, "bad request head")
            return
        body = self._request_body(idle) if has_body else None
        try:
            resp = self.sock.link.target.send(head, body, self.target_cancel)
        except _TARGET_ERRORS as err:
            if self.cancelled:
                return
            log.warning("target failed for %s: %r", head.label, err)
            self._reset(v3.RST_TARGET_FAILED, f"target failed: {failure_reason(err)}")
            return
        complete = False
        try:
            response_head = ResponseHead(status=resp.status, reason=resp.reason or "",
                                         headers=tuple(resp.headers.items()))
            text = encode_response_head(response_head)
            if body_complete(resp):  # no body at all: one HEADER with END_STREAM
                self._send_all(v3.header_frames(self.id, text, True), counted=True)
                complete = True
                return
            # frames wait in ``pending`` only while more are certain to follow at once
            pending = v3.header_frames(self.id, text, False)
            self._count(sum(len(f) - 6 for f in pending))
            if not small_body(resp, chunk_size):
                self._send_all(pending)
                pending = []
            chunks = iter_response(resp, chunk_size)
            while True:
                self._wait_window(idle)
                try:
                    chunk = next(chunks, None)
                except _TARGET_ERRORS as err:
                    if self.cancelled:
                        raise _Cancelled() from err
                    log.warning("target failed mid-body for %s: %r", head.label, err)
                    self._send_all(pending)
                    self._reset(v3.RST_TARGET_FAILED,
                                f"target failed mid-body: {failure_reason(err)}")
                    return
                if chunk is None:
                    break
                pending.append(v3.data_frame(self.id, chunk))
                self._count(len(chunk))
                if body_complete(resp):
                    break  # the end marker goes out with this last chunk, window or not
                self._send_all(pending)
                pending = []
            pending.append(v3.data_frame(self.id, b"", end_stream=True))
            self._send_all(pending)
            complete = True
        finally:
            if not complete:
                resp.close()
            resp.release_conn()


class V3Socket:
    """Reads one v3 websocket until it ends; streams run on the connector's pool."""

    def __init__(self, link: RouterLink, ws: websocket.WebSocket, pool: ThreadPoolExecutor,
                 message_limit: int = DEFAULT_MESSAGE_LIMIT) -> None:
        self.link = link
        #: The largest message the router takes: DATA payloads stay 6 bytes under it.
        self.message_limit = message_limit
        self.ws = ws
        self.pool = pool
        self._lock = threading.Lock()
        self._streams: dict[int, ConnectorStream] = {}

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._streams)

    def end_stream(self, stream: ConnectorStream) -> None:
        with self._lock:
            if self._streams.get(stream.id) is stream:
                del self._streams[stream.id]

    def run(self) -> None:
        """Read frames until the socket closes; then cancel what is still in flight."""
        interval = self.link.config.ping_interval
        self.ws.settimeout(interval)
        last_heard = time.monotonic()
        reader = FrameReader(self.ws)
        try:
            while True:
                try:
                    opcode, payload = reader.recv()
                except websocket.WebSocketTimeoutException:
                    if time.monotonic() - last_heard > 2 * interval:
                        log.warning("router %s silent for %.0fs: reconnecting", self.link.shown,
                                    2 * interval)
                        return
                    self.ws.ping()
                    continue
                last_heard = time.monotonic()
                if opcode == ABNF.OPCODE_CLOSE:
                    return
                if opcode == ABNF.OPCODE_BINARY:
                    self._dispatch(payload)
        except _WS_ERRORS as err:
            if not self.link.stopping.is_set():
                log.info("v3 socket to %s lost: %r", self.link.shown, err)
        finally:
            with self._lock:
                streams = list(self._streams.values())
                self._streams.clear()
            for stream in streams:
                stream.cancel()

    def _dispatch(self, message: bytes) -> None:
        try:
            frame = v3.decode(message)
        except RemoteProtocolError as err:
            log.warning("dropping malformed v3 message from %s: %s", self.link.shown, err)
            return
        with self._lock:
            stream = self._streams.get(frame.stream_id)
            if stream is None and frame.type == v3.HEADER:
                stream = self._streams[frame.stream_id] = ConnectorStream(self, frame.stream_id)
        if stream is None:
            return  # unknown stream: dropped
        if frame.type == v3.HEADER:
            ack = v3.window_update_frame(frame.stream_id, len(frame.payload))
            if frame.end_stream and frame.flags & v3.END_HEADER:
                stream.deferred_ack = ack  # a whole bodiless request: see ConnectorStream
            else:
                self.ws.send_binary(ack)
            try:
                text = stream.headers.feed(frame)
            except RemoteProtocolError as err:
                log.warning("stream %d: %s", frame.stream_id, err)
                self.end_stream(stream)
                self.ws.send_binary(v3.rst_frame(frame.stream_id, v3.RST_TARGET_FAILED,
                                                 "bad header"))
                return
            if text is not None:
                self.pool.submit(stream.serve, text, not frame.end_stream)
        elif frame.type == v3.DATA:
            stream.feed_body(frame.payload, frame.end_stream)
        elif frame.type == v3.WINDOW_UPDATE:
            try:
                stream.acked(frame.window_increment())
            except RemoteProtocolError as err:
                log.warning("stream %d: %s", frame.stream_id, err)
        elif frame.type == v3.RST_STREAM:
            self.end_stream(stream)
            stream.cancel()
