"""The router's side of Cranker v3: streams multiplexed over one connector websocket.

Each :class:`RouterStream` belongs to a :class:`~crank_sync.router.v3_socket.V3Session`, the
runner of its socket's sans-IO session, whose reader thread hands it frames; it never blocks.
Each stream is driven by the client's worker thread
(:func:`crank_sync.router.v3_relay.exchange`), which does the flow
control both ways.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol import v3
from ..protocol.v3_session import DataReceived, Event, StreamReset
from .websocket import ConnectionClosed

if TYPE_CHECKING:
    from ..protocol.v3_session import Stream as SessionStream
    from .v3_socket import V3Session

#: DATA frames at least this large are acknowledged as soon as they are written.
BULK = 16 * 1024

log = logging.getLogger(__name__)

#: Bytes a stream may hold unread before the connector is judged to ignore flow control.
STREAM_BUFFER_LIMIT = 4 * 1024 * 1024


class _Closed:
    """The socket under a stream closed; ``code`` is None when no close frame arrived."""

    def __init__(self, code: int | None) -> None:
        self.code = code


class _Leftover:
    """Response bytes the client's socket did not take at once, and the DATA length to
    acknowledge once they are written."""

    def __init__(self, data: bytes, ack: int) -> None:
        self.data = data
        self.ack = ack


class _DirectFailed:
    """Writing a DATA frame straight to the client failed (client gone, body too long)."""

    def __init__(self, error: BaseException) -> None:
        self.error: BaseException | None = error


#: Writes a DATA payload to the client without blocking; returns what did not fit.
DirectWriter = Callable[[bytes], bytes]


#: What the client's thread takes from a stream: a session event, or news from the reader.
Item = Event | _Closed | _Leftover | _DirectFailed


class RouterStream:
    """One request on a v3 socket: session events in, window accounting for what we send.

    While the client's thread waits with nothing to do, it may lend the stream a
    :data:`DirectWriter` (:meth:`write_directly`): the reader thread then writes each DATA
    payload to the client itself when the client's socket takes it at once, and acknowledges
    it, with no thread hand-off. Whatever does not fit, and every other frame, goes to the
    client's thread as before; taking an event takes the writer back, so the two threads never
    write to the client at the same time.
    """

    def __init__(self, session: V3Session, state: SessionStream) -> None:
        self.session = session
        self.id = state.id
        #: The session's send window of this stream (changed under ``session.lock``).
        self.window = state.window
        self._cond = threading.Condition()
        self._events: collections.deque[Item] = collections.deque()
        self._buffered = 0
        self.overflowed = False
        self._direct: DirectWriter | None = None
        #: The stream was reset, or its socket closed: nothing more may be sent on it.
        self.ended = False

    # reader thread side
    def put(self, event: Event | _Closed) -> None:
        ack = 0
        reset = False
        with self._cond:
            if self.overflowed and not isinstance(event, _Closed):
                return  # reset for ignoring flow control: what it still sends is dropped
            if isinstance(event, (_Closed, StreamReset)):
                self.ended = True
            if type(event) is DataReceived and self._direct is not None and not self._events \
                    and event.data and not event.end_stream:
                ack = self._write_directly(self._direct, event.data)
            else:
                if type(event) is DataReceived:
                    self._buffered += len(event.data)
                    if self._buffered > STREAM_BUFFER_LIMIT:
                        # the connector sent far past its window: reset the stream and drop
                        # the rest, so memory stays bounded and the other streams go on
                        self.overflowed = reset = True
                self._events.append(event)
                self._cond.notify_all()
        if reset:
            log.warning("stream %d: the connector ignored flow control (%d bytes unread); "
                        "resetting the stream", self.id, STREAM_BUFFER_LIMIT)
            self.session.reset(self, v3.RST_PROTOCOL_ERROR, "flow control ignored")
        if ack:
            try:
                self.session.ack(self.id, [ack])
            except (ConnectionClosed, OSError) as err:
                log.debug("stream %d: acknowledging a direct write: %r", self.id, err)

    def _write_directly(self, direct: DirectWriter, payload: bytes) -> int:
        """Under the lock: write ``payload`` to the client; the length to acknowledge now."""
        try:
            rest = direct(payload)
        except Exception as err:  # noqa: BLE001 - handed to the client's thread
            self._direct = None
            self._events.append(_DirectFailed(err))
            self._cond.notify_all()
            return 0
        if not rest:
            return len(payload)
        self._direct = None  # the client's thread finishes this write, then takes over
        self._events.append(_Leftover(rest, len(payload)))
        self._cond.notify_all()
        return 0

    def write_directly(self, writer: DirectWriter) -> None:
        """Lend ``writer`` to the reader thread until the next event is taken (client's
        thread, with nothing queued and nothing of its own left to write)."""
        with self._cond:
            if not self._events:
                self._direct = writer

    def acked(self, n: int) -> None:
        with self.session.lock:
            resumed = self.window.acked(n)
        if resumed:
            self.resumed()

    def resumed(self) -> None:
        """The window lets a paused sender go on (only a resumed sender needs waking)."""
        with self._cond:
            self._cond.notify_all()

    # worker side
    def get(self, timeout: float) -> Item | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._events, timeout):
                return None
            self._direct = None  # from here on only the client's thread writes
            event = self._events.popleft()
            if type(event) is DataReceived:
                self._buffered -= len(event.data)
            return event

    def take_back(self) -> None:
        """End a loan of the direct writer; returns once the reader is not writing."""
        with self._cond:
            self._direct = None

    def wait_writable(self, timeout: float) -> bool:
        """Wait until the window allows sending more; also wakes on any incoming event."""
        with self._cond:
            return bool(
                self._cond.wait_for(lambda: not self.window.paused or bool(self._events), timeout)
            )

    def wait_window(self, timeout: float) -> bool:
        """Wait until the window allows sending more, or the stream ended; unlike
        :meth:`wait_writable`, events of the other direction do not wake it (a tunnel)."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: not self.window.paused or self.ended,
                                            timeout))

    def has_events(self) -> bool:
        with self._cond:
            return bool(self._events)

    def send(self, frame: bytes, payload_len: int) -> None:
        """Send a HEADER or DATA frame (``payload_len``: its payload, counted by the session)."""
        with self.session.lock:
            self.session.core.sending(frame)
        self.session.send(frame)


def reset_stream(stream: RouterStream, code: int, message: str) -> None:
    """Reset ``stream`` from our side (the session drops whatever still arrives for it); a
    socket already gone needs no RST_STREAM."""
    stream.session.reset(stream, code, message)
