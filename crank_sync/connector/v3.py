"""The connector's side of Cranker v3: one reader thread per socket, streams on a worker pool.

The reader (the socket's own thread) feeds each message to the socket's sans-IO
:class:`~crank_sync.protocol.v3_session.Session` and hands the events to the streams; it never
waits for a target. Each stream replays its request on a pool thread and writes the frames the
session encodes to the socket (websocket-client serialises sends), honouring the router's
WINDOW_UPDATEs. The session is used under the socket's ``lock``, held only around its calls;
each stream has its own condition, notified after the session changed.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..errors import ReadTimeout, RemoteProtocolError, TargetError, WebSocketError
from ..protocol import (
    RequestHead,
    ResponseHead,
    encode_response_head,
    parse_request_text,
    v3,
)
from ..protocol import v3_session as core
from ..protocol.limits import DEFAULT_MESSAGE_LIMIT, V3_OVERHEAD
from ..ws.frames import Opcode
from ..ws.ping import silent_too_long
from . import tunnel
from .frames import FrameReader, body_complete, small_body
from .target import Cancel, TargetResponse, _Cancelled, failure_reason, iter_response
from .websocket import ConnectorWebSocket

if TYPE_CHECKING:
    from .link import RouterLink

log = logging.getLogger(__name__)

_END = object()


class ConnectorStream:
    """One request on a v3 socket, as the connector serves it."""

    def __init__(self, sock: V3Socket, state: core.Stream) -> None:
        self.sock = sock
        self.id = state.id
        #: The session's send window of this stream (changed under the socket's lock).
        self.window = state.window
        self._cond = threading.Condition()
        self._body: collections.deque[object] = collections.deque()
        self.cancelled = False
        self.target_cancel = Cancel()
        #: A websocket tunnel's threads own the stream now (they end it).
        self.handed_off = False
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

    def resumed(self) -> None:
        """The session let this stream's paused sender go on."""
        with self._cond:
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

    def head_frames(self, text: str, end_stream: bool) -> list[bytes]:
        with self.sock.lock:
            self._check_open()
            return self.sock.session.send_head(self.id, text, end_stream)

    def data_frame(self, data: bytes, end_stream: bool = False) -> bytes:
        with self.sock.lock:
            self._check_open()
            return self.sock.session.send_data(self.id, data, end_stream)

    def _check_open(self) -> None:
        """Under the socket's lock: a stream reset or cut off by the socket's end is done."""
        if self.cancelled or self.id not in self.sock.session.streams:
            raise _Cancelled()

    def request_body(self, timeout: float, patient: bool = False) -> Iterator[bytes]:
        """The router's DATA; after ``timeout`` without any, _Cancelled (or, ``patient``,
        waiting on: a quiet websocket)."""
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._body or self.cancelled, timeout):
                    if patient:
                        continue
                    raise _Cancelled("no request body data from the router in time")
                if self.cancelled:
                    raise _Cancelled()
                item = self._body.popleft()
            if item is _END:
                return
            assert isinstance(item, bytes)
            yield item
            # urllib3 asks for the next chunk only once this one is written to the target
            with self.sock.lock:
                ack = self.sock.session.ack(self.id, len(item))
            self._send(ack)

    def wait_window(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: not self.window.paused or self.cancelled,
                                       timeout):
                raise _Cancelled("no WINDOW_UPDATE from the router in time")
            if self.cancelled:
                raise _Cancelled()

    def send_all(self, frames: list[bytes]) -> None:
        """Send v3 messages (encoded by the session) with one write."""
        if self.cancelled:
            raise _Cancelled()
        frames = self._with_deferred_ack(frames)
        if frames:
            self.sock.ws.send_frames([(Opcode.BINARY, f) for f in frames])

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
        except WebSocketError as err:
            log.info("router socket lost while serving stream %d: %r", self.id, err)
        except Exception:  # noqa: BLE001 - never lose a pool thread silently
            log.exception("stream %d failed", self.id)
            self.reset(v3.RST_TARGET_FAILED, "connector error")
        finally:
            if not self.handed_off:
                self.sock.end_stream(self)

    def reset(self, code: int, message: str) -> None:
        with self.sock.lock:
            rst = self.sock.session.reset(self.id, code, message)
        frames = self._with_deferred_ack([rst])
        try:
            self.sock.ws.send_frames([(Opcode.BINARY, f) for f in frames])
        except WebSocketError:
            pass

    def _serve(self, text: str, has_body: bool, idle: float, chunk_size: int) -> None:
        try:
            head = parse_request_text(text, has_body)
        except RemoteProtocolError as err:
            log.warning("bad request head on stream %d: %s", self.id, err)
            self.reset(v3.RST_TARGET_FAILED, "bad request head")
            return
        body = self.request_body(idle) if has_body else None
        resp = self._ask_target(head, body, chunk_size)
        if resp is None:
            return
        complete = False
        try:
            complete = self._relay(head, resp, idle, chunk_size)
        finally:
            if not complete:
                resp.close()
            resp.release_conn()

    def _ask_target(self, head: RequestHead, body: Iterator[bytes] | None,
                    chunk_size: int) -> TargetResponse | None:
        """The target's response; None when there is nothing to relay (a tunnelled upgrade
        that has run its course, or a failure already reset on the stream)."""
        try:
            if self.sock.tunnels and tunnel.is_websocket_upgrade(head.headers):
                return self.sock.link.tunnel(
                    head, "3.0", lambda h, ended: tunnel.serve_v3(self, h, chunk_size, ended))
            return self.sock.link.send(head, body, self.target_cancel, "3.0")
        except TargetError as err:
            if not self.cancelled:
                log.warning("target failed for %s: %r", head.label, err)
                self.reset(v3.RST_TARGET_FAILED, f"target failed: {failure_reason(err)}")
            return None

    def _relay(self, head: RequestHead, resp: TargetResponse, idle: float,
               chunk_size: int) -> bool:
        """Send ``resp`` down the stream; True once its whole body went out."""
        response_head = ResponseHead(status=resp.status, reason=resp.reason or "",
                                     headers=tuple(resp.headers.items()))
        text = encode_response_head(response_head)
        if body_complete(resp):  # no body at all: one HEADER with END_STREAM
            self.send_all(self.head_frames(text, True))
            return True
        # frames wait in ``pending`` only while more are certain to follow at once
        pending = self.head_frames(text, False)
        if not small_body(resp, chunk_size):
            self.send_all(pending)
            pending = []
        chunks = iter_response(resp, chunk_size)
        while True:
            self.wait_window(idle)
            try:
                chunk = next(chunks, None)
            except TargetError as err:
                if self.cancelled:
                    raise _Cancelled() from err
                log.warning("target failed mid-body for %s: %r", head.label, err)
                self.send_all(pending)
                self.reset(v3.RST_TARGET_FAILED, f"target failed mid-body: {failure_reason(err)}")
                return False
            if chunk is None:
                break
            pending.append(self.data_frame(chunk))
            if body_complete(resp):
                break  # the end marker goes out with this last chunk, window or not
            self.send_all(pending)
            pending = []
        pending.append(self.data_frame(b"", end_stream=True))
        self.send_all(pending)
        return True


class V3Socket:
    """Reads one v3 websocket until it ends; streams run on the connector's pool."""

    def __init__(self, link: RouterLink, ws: ConnectorWebSocket, pool: ThreadPoolExecutor,
                 message_limit: int = DEFAULT_MESSAGE_LIMIT, tunnels: bool = False) -> None:
        self.link = link
        #: The router accepted websocket upgrades through the tunnel on this socket.
        self.tunnels = tunnels
        #: The largest message the router takes: DATA payloads stay 6 bytes under it.
        self.message_limit = message_limit
        self.ws = ws
        self.pool = pool
        #: Guards ``session`` and ``_streams``; held only around their calls, never over I/O.
        self.lock = threading.Lock()
        self.session = core.Session(core.Role.CONNECTOR)
        self._streams: dict[int, ConnectorStream] = {}

    @property
    def inflight(self) -> int:
        with self.lock:
            return len(self._streams)

    def end_stream(self, stream: ConnectorStream) -> None:
        with self.lock:
            if self._streams.get(stream.id) is stream:
                del self._streams[stream.id]
                self.session.forget(stream.id)

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
                except ReadTimeout:
                    if silent_too_long(last_heard, interval, time.monotonic()):
                        log.warning("router %s silent for %.0fs: reconnecting", self.link.shown,
                                    2 * interval)
                        return
                    self.ws.ping()
                    continue
                last_heard = time.monotonic()
                if opcode == Opcode.CLOSE:
                    return
                if opcode == Opcode.BINARY:
                    self._dispatch(payload)
        except WebSocketError as err:
            if not self.link.stopping.is_set():
                log.info("v3 socket to %s lost: %r", self.link.shown, err)
        finally:
            with self.lock:
                streams = list(self._streams.values())
                self._streams.clear()
                for stream in streams:
                    self.session.forget(stream.id)
            for stream in streams:
                stream.cancel()

    def _dispatch(self, message: bytes) -> None:
        try:
            with self.lock:
                events = self.session.receive(message)
        except RemoteProtocolError as err:
            log.warning("dropping malformed v3 message from %s: %s", self.link.shown, err)
            return
        for event in events:
            self._handle(event)

    def _handle(self, event: core.Event) -> None:
        if isinstance(event, core.HeadReceived):
            self._start(event)
            return
        with self.lock:
            stream = self._streams.get(event.stream_id)
            if stream is None and isinstance(event, (core.StreamError, core.StreamReset)):
                self.session.forget(event.stream_id)  # its head never completed
        if isinstance(event, core.StreamError):
            log.warning("stream %d: %s", event.stream_id, event.reason)
            with self.lock:
                rst = self.session.reset(event.stream_id, v3.RST_TARGET_FAILED, "bad header")
            if stream is not None:
                self.end_stream(stream)
                stream.cancel()
            self.ws.send_binary(rst)
        elif stream is None:
            return  # a head still arriving, or a stream already done
        elif isinstance(event, core.DataReceived):
            stream.feed_body(event.data, event.end_stream)
        elif isinstance(event, core.WindowUpdated):
            if event.resumed:  # only a resumed sender needs waking
                stream.resumed()
        elif isinstance(event, core.StreamReset):
            self.end_stream(stream)
            stream.cancel()

    def _start(self, event: core.HeadReceived) -> None:
        """A whole request head: acknowledge it and serve the request on the pool."""
        with self.lock:
            stream = ConnectorStream(self, self.session.streams[event.stream_id])
            self._streams[event.stream_id] = stream
            acks = [self.session.ack(event.stream_id, n) for n in event.frame_sizes]
        if event.end_stream:  # a bodiless request: its last ack waits, see ConnectorStream
            *acks, stream.deferred_ack = acks
        for ack in acks:
            self.ws.send_binary(ack)
        self.pool.submit(stream.serve, event.text, not event.end_stream)
