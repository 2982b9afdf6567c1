"""The streams of one Cranker v3 socket, as a sans-IO state machine.

A :class:`Session` owns the stream table of one websocket and, for each stream, its state, its
send window (:class:`~crank_sync.protocol.v3.SendWindow`) and the bytes received but not yet
acknowledged. Messages from the peer go in through :meth:`Session.receive`, which returns
events; what to send comes out of :meth:`Session.send_head`, :meth:`Session.send_data`,
:meth:`Session.reset` and :meth:`Session.ack` as bytes. No sockets, no threads, no clock: the
router's and the connector's runners move the bytes and hold the locks.

A stream's state changes only through :data:`TRANSITIONS`; anything not in the table is a
protocol error when we do it, and is dropped when the peer does.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import LocalProtocolError, RemoteProtocolError
from . import v3


class Role(enum.Enum):
    """The router opens streams (ids from 1, wrapping at int32); the connector answers them."""

    ROUTER = "router"
    CONNECTOR = "connector"


class StreamState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is slow Python code

    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed (local)"  # we sent END_STREAM
    HALF_CLOSED_REMOTE = "half-closed (remote)"  # the peer sent END_STREAM
    CLOSED = "closed"
    RESET = "reset"


class Move(enum.Enum):
    __hash__ = object.__hash__  # as StreamState: the table is looked up per frame

    SEND_END = "send END_STREAM"
    RECV_END = "receive END_STREAM"
    SEND_RESET = "send RST_STREAM"
    RECV_RESET = "receive RST_STREAM"


_S = StreamState
_M = Move
#: Every allowed state change; a missing pair is a protocol error (ours) or dropped (theirs).
TRANSITIONS: dict[tuple[StreamState, Move], StreamState] = {
    (_S.OPEN, _M.SEND_END): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _M.RECV_END): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_LOCAL, _M.RECV_END): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _M.SEND_END): _S.CLOSED,
    (_S.OPEN, _M.SEND_RESET): _S.RESET,
    (_S.HALF_CLOSED_LOCAL, _M.SEND_RESET): _S.RESET,
    (_S.HALF_CLOSED_REMOTE, _M.SEND_RESET): _S.RESET,
    (_S.CLOSED, _M.SEND_RESET): _S.CLOSED,
    (_S.RESET, _M.SEND_RESET): _S.RESET,
    (_S.OPEN, _M.RECV_RESET): _S.RESET,
    (_S.HALF_CLOSED_LOCAL, _M.RECV_RESET): _S.RESET,
    (_S.HALF_CLOSED_REMOTE, _M.RECV_RESET): _S.RESET,
    # what we still send after the peer reset is pointless but not wrong: it is dropped there
    (_S.RESET, _M.SEND_END): _S.RESET,
}
#: States in which the peer may still send HEADER and DATA frames.
RECEIVING = frozenset({_S.OPEN, _S.HALF_CLOSED_LOCAL})
#: States in which we may still send HEADER and DATA frames.
SENDING = frozenset({_S.OPEN, _S.HALF_CLOSED_REMOTE, _S.RESET})


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    stream_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class HeadReceived(Event):
    """A whole head (its HEADER frames joined); ``end_stream``: no body follows.
    ``frame_sizes``: the payload size of each HEADER frame, each owed its own WINDOW_UPDATE."""

    text: str
    frame_sizes: tuple[int, ...]
    end_stream: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class DataReceived(Event):
    """A DATA payload; ``end_stream``: the last of the body (``data`` may be empty then)."""

    data: bytes
    end_stream: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamReset(Event):
    code: int
    message: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowUpdated(Event):
    """The peer acknowledged ``increment`` bytes; ``resumed``: a paused sender may go on."""

    increment: int
    resumed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamError(Event):
    """The peer broke the protocol on one stream (bad head); the stream is reset locally and
    the runner decides what to tell whom."""

    reason: str


# -- the session -------------------------------------------------------------------------------


class Stream:
    """One stream's state: plain data, changed only by its :class:`Session`."""

    __slots__ = ("id", "state", "window", "unacked", "head_done", "headers", "head_sizes")

    def __init__(self, stream_id: int, header_limit: int) -> None:
        self.id = stream_id
        self.state = StreamState.OPEN
        self.window = v3.SendWindow()
        #: Payload bytes received and not yet acknowledged with :meth:`Session.ack`.
        self.unacked = 0
        self.head_done = False
        self.headers = v3.HeaderAssembler(header_limit)
        self.head_sizes: list[int] = []


class Session:
    """The stream table of one v3 websocket, for one side."""

    def __init__(self, role: Role, header_limit: int = 1024 * 1024, first_id: int = 1) -> None:
        if not 0 < first_id <= v3.MAX_STREAM_ID:
            raise LocalProtocolError(f"invalid first stream id {first_id}")
        self.role = role
        self.header_limit = header_limit
        self.streams: dict[int, Stream] = {}
        self._next_id = first_id

    # -- streams ---------------------------------------------------------------------------

    def open_stream(self) -> int:
        """A new stream's id (router only): ids count from 1 and wrap at int32, skipping ids
        still in the table."""
        if self.role is not Role.ROUTER:
            raise LocalProtocolError("only the router opens v3 streams")
        for _ in range(len(self.streams) + 1):
            stream_id = self._next_id
            self._next_id = 1 if stream_id >= v3.MAX_STREAM_ID else stream_id + 1
            if stream_id not in self.streams:
                self.streams[stream_id] = Stream(stream_id, self.header_limit)
                return stream_id
        raise LocalProtocolError("no free v3 stream id")  # pragma: no cover - 2**31 streams

    def forget(self, stream_id: int) -> None:
        """Drop a finished stream from the table; its id's frames are dropped from now on."""
        self.streams.pop(stream_id, None)

    def state(self, stream_id: int) -> StreamState | None:
        stream = self.streams.get(stream_id)
        return None if stream is None else stream.state

    def _move(self, stream: Stream, move: Move) -> None:
        new = TRANSITIONS.get((stream.state, move))
        if new is None:
            raise LocalProtocolError(f"stream {stream.id}: cannot {move.value} when "
                                     f"{stream.state.value}")
        stream.state = new

    def _local(self, stream_id: int) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open")
        if stream.state not in SENDING:
            raise LocalProtocolError(f"stream {stream_id} is {stream.state.value}: "
                                     "nothing more may be sent on it")
        return stream

    # -- what we send ----------------------------------------------------------------------

    def send_head(self, stream_id: int, text: str, end_stream: bool = False) -> list[bytes]:
        """The HEADER frames of ``text`` (split as :func:`v3.header_frames` does)."""
        stream = self._local(stream_id)
        frames = v3.header_frames(stream_id, text, end_stream)
        self._sent(stream, sum(len(f) for f in frames) - 6 * len(frames), end_stream)
        return frames

    def send_data(self, stream_id: int, data: bytes = b"", end_stream: bool = False) -> bytes:
        stream = self._local(stream_id)
        frame = v3.data_frame(stream_id, data, end_stream)
        self._sent(stream, len(data), end_stream)
        return frame

    def sending(self, message: bytes) -> None:
        """Account for a HEADER or DATA message encoded elsewhere, as if this session had
        encoded it (its payload counts in the window; END_STREAM moves the state)."""
        frame_type, flags, stream_id = v3.PREFIX.unpack_from(message)
        if frame_type not in (v3.HEADER, v3.DATA):
            raise LocalProtocolError(f"sending() takes HEADER and DATA, not type {frame_type}")
        self._sent(self._local(stream_id), len(message) - 6, bool(flags & v3.END_STREAM))

    def _sent(self, stream: Stream, payload: int, end_stream: bool) -> None:
        if stream.state is not StreamState.RESET:
            stream.window.sent(payload)
        if end_stream:
            self._move(stream, Move.SEND_END)

    def reset(self, stream_id: int, code: int, message: str = "") -> bytes:
        """A RST_STREAM for ``stream_id`` (known or not: the peer drops what it does not
        know); a known stream becomes reset."""
        frame = v3.rst_frame(stream_id, code, message)
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._move(stream, Move.SEND_RESET)
        return frame

    def ack(self, stream_id: int, n: int | None = None) -> bytes:
        """A WINDOW_UPDATE for ``n`` received bytes (all unacknowledged ones by default).
        A stream already forgotten has nothing left to count: the frame is made all the same
        (the peer drops it if it is done too)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return v3.window_update_frame(stream_id, n or 0)
        n = stream.unacked if n is None else n
        if n > stream.unacked:
            raise LocalProtocolError(f"stream {stream_id}: acknowledging {n} bytes, "
                                     f"{stream.unacked} received")
        stream.unacked -= n
        return v3.window_update_frame(stream_id, n)

    def paused(self, stream_id: int) -> bool:
        stream = self.streams.get(stream_id)
        return stream is not None and stream.window.paused

    # -- what the peer sends ---------------------------------------------------------------

    def receive(self, message: bytes) -> list[Event]:
        """Events for one binary message. Frames of unknown streams, of unknown types and of
        streams the peer already ended are dropped (no events); a message too short to be a v3
        frame, or a WINDOW_UPDATE without its increment, raises RemoteProtocolError."""
        frame = v3.decode(message)
        stream = self.streams.get(frame.stream_id)
        if stream is None:
            if frame.type != v3.HEADER or self.role is not Role.CONNECTOR:
                return []
            stream = self.streams[frame.stream_id] = Stream(frame.stream_id, self.header_limit)
        if frame.type == v3.WINDOW_UPDATE:
            return self._window_update(stream, frame)
        if frame.type == v3.RST_STREAM:
            if (stream.state, Move.RECV_RESET) not in TRANSITIONS:
                return []
            stream.state = TRANSITIONS[stream.state, Move.RECV_RESET]
            code, text = frame.rst_code()
            return [StreamReset(stream_id=stream.id, code=code, message=text)]
        if frame.type not in (v3.HEADER, v3.DATA) or stream.state not in RECEIVING:
            return []
        stream.unacked += len(frame.payload)
        if frame.type == v3.HEADER:
            return self._header(stream, frame)
        if not stream.head_done:
            return self._error(stream, "DATA before a head")
        if frame.end_stream:
            stream.state = TRANSITIONS[stream.state, Move.RECV_END]
        return [DataReceived(stream_id=stream.id, data=frame.payload,
                             end_stream=frame.end_stream)]

    def _window_update(self, stream: Stream, frame: v3.Frame) -> list[Event]:
        increment = frame.window_increment()
        if stream.state in (StreamState.CLOSED, StreamState.RESET):
            return []
        resumed = stream.window.acked(increment)
        return [WindowUpdated(stream_id=stream.id, increment=increment, resumed=resumed)]

    def _header(self, stream: Stream, frame: v3.Frame) -> list[Event]:
        if stream.head_done:
            return self._error(stream, "a second head")
        try:
            text = stream.headers.feed(frame)
        except RemoteProtocolError as err:
            return self._error(stream, f"bad head: {err}")
        stream.head_sizes.append(len(frame.payload))
        if text is None:
            return []
        sizes, stream.head_sizes = tuple(stream.head_sizes), []
        stream.head_done = True
        if frame.end_stream:
            stream.state = TRANSITIONS[stream.state, Move.RECV_END]
        return [HeadReceived(stream_id=stream.id, text=text, frame_sizes=sizes,
                             end_stream=frame.end_stream)]

    def _error(self, stream: Stream, reason: str) -> list[Event]:
        stream.state = StreamState.RESET
        return [StreamError(stream_id=stream.id, reason=reason)]
