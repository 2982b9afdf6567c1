"""The router's side of a Cranker v3 socket: the threaded runner of its sans-IO session.

:class:`V3Session` holds the socket's :class:`~crank_sync.protocol.v3_session.Session` (stream
table, states, send windows) under its ``lock``, held only around the session's calls. The
websocket's reader thread calls :meth:`V3Session.dispatch` for every message; it never blocks,
it only hands the session's events to the :class:`~crank_sync.router.v3.RouterStream` they
belong to, whose client worker thread does the rest.
"""
from __future__ import annotations

import logging
import threading

from ..errors import RemoteProtocolError
from ..protocol import v3
from ..protocol import v3_session as core
from .v3 import RouterStream, _Closed
from .websocket import ConnectionClosed, RouterWebSocket

log = logging.getLogger(__name__)


class V3Session:
    """The streams of one v3 websocket: the threaded runner of its sans-IO session."""

    def __init__(self) -> None:
        self.ws: RouterWebSocket | None = None
        #: Guards ``core`` and ``_streams``; held only around their calls, never over I/O.
        self.lock = threading.Lock()
        self.core = core.Session(core.Role.ROUTER)
        self._streams: dict[int, RouterStream] = {}
        self._draining = False
        self._closed = False

    @property
    def inflight(self) -> int:
        with self.lock:
            return len(self._streams)

    def send(self, frame: bytes) -> None:
        assert self.ws is not None
        self.ws.send(frame)

    def send_many(self, frames: list[bytes]) -> None:
        assert self.ws is not None
        self.ws.send_many(frames)

    def reset(self, stream: RouterStream, code: int, message: str) -> None:
        """Reset ``stream`` from our side: the session drops whatever it still receives."""
        with self.lock:
            frame = self.core.reset(stream.id, code, message)
        try:
            self.send(frame)
        except (ConnectionClosed, OSError) as err:
            log.debug("stream %d: sending RST_STREAM %d: %r", stream.id, code, err)

    def open_stream(self) -> RouterStream:
        with self.lock:
            if self._closed or self._draining:
                raise ConnectionClosed(1001, "socket closing")
            stream_id = self.core.open_stream()
            stream = self._streams[stream_id] = RouterStream(self, self.core.streams[stream_id])
            return stream

    def end_stream(self, stream: RouterStream) -> None:
        with self.lock:
            if self._streams.pop(stream.id, None) is not None:
                self.core.forget(stream.id)
            close_now = self._draining and not self._streams
        if close_now and self.ws is not None:
            self.ws.close(1001, "Deregistered")

    def drain(self) -> None:
        """Deregistration: close with 1001 once no stream is in flight."""
        with self.lock:
            self._draining = True
            close_now = not self._streams
        if close_now and self.ws is not None:
            self.ws.close(1001, "Deregistered")

    # -- reader thread -----------------------------------------------------------------------

    def dispatch(self, msg: str | bytes) -> None:
        if isinstance(msg, str):
            return  # text messages on a v3 socket are ignored
        try:
            with self.lock:
                events = self.core.receive(msg)  # unknown ids and types: no events
        except RemoteProtocolError as err:
            log.warning("dropping malformed v3 message: %s", err)
            return
        for event in events:
            # one dict lookup, atomic without the lock: a stream ending meanwhile ignores it
            stream = self._streams.get(event.stream_id)
            if stream is None:
                continue
            if isinstance(event, core.WindowUpdated):
                if event.resumed:
                    stream.resumed()
            else:
                for frame in _frames_of(event):
                    stream.put(frame)

    def on_socket_closed(self, ws: RouterWebSocket) -> None:
        code = ws.close_reason if ws.close_received else None
        with self.lock:
            self._closed = True
            streams = list(self._streams.values())
        for stream in streams:
            stream.put(_Closed(int(code) if code is not None else None))


def _frames_of(event: core.Event) -> list[v3.Frame]:
    """The frames the relay (:func:`~crank_sync.router.v3._relay_events`) reads for a session
    event: a head as the HEADER frames it came in, so each is acknowledged; a stream the
    session reset for a bad head reads as reset with 1002."""
    sid = event.stream_id
    if isinstance(event, core.DataReceived):
        flags = v3.END_STREAM if event.end_stream else 0
        return [v3.Frame(type=v3.DATA, flags=flags, stream_id=sid, payload=event.data)]
    if isinstance(event, core.HeadReceived):
        return _head_frames(event)
    if isinstance(event, core.StreamReset):
        code, message = event.code, event.message
    else:
        assert isinstance(event, core.StreamError)
        code, message = v3.RST_PROTOCOL_ERROR, event.reason
    payload = v3.rst_frame(sid, code, message)[6:]
    return [v3.Frame(type=v3.RST_STREAM, flags=0, stream_id=sid, payload=payload)]


def _head_frames(event: core.HeadReceived) -> list[v3.Frame]:
    data = event.text.encode("utf-8")
    frames, start = [], 0
    for index, size in enumerate(event.frame_sizes):
        last = index == len(event.frame_sizes) - 1
        flags = (v3.END_HEADER | (v3.END_STREAM if event.end_stream else 0)) if last else 0
        frames.append(v3.Frame(type=v3.HEADER, flags=flags, stream_id=event.stream_id,
                               payload=data[start:start + size]))
        start += size
    return frames
