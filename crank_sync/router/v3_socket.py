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

    def ack(self, stream_id: int, counts: list[int]) -> None:
        """Acknowledge received payloads: one WINDOW_UPDATE each, as peers count them."""
        with self.lock:
            frames = [self.core.ack(stream_id, n) for n in counts]
        self.send_many(frames)

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
            if type(event) is core.WindowUpdated:
                if event.resumed:
                    stream.resumed()
            else:
                stream.put(event)

    def on_socket_closed(self, ws: RouterWebSocket) -> None:
        code = ws.close_reason if ws.close_received else None
        with self.lock:
            self._closed = True
            streams = list(self._streams.values())
        for stream in streams:
            stream.put(_Closed(int(code) if code is not None else None))

