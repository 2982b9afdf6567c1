"""The router's side of Cranker v3: streams multiplexed over one connector websocket.

The websocket's reader thread calls :meth:`V3Session.dispatch` for every message; it never
blocks, it only hands frames to the stream they belong to. Each stream is driven by the
client's worker thread (:func:`exchange`), which does the flow control both ways.
"""
from __future__ import annotations

import collections
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    ConnectorProtocolError,
    GatewayTimeout,
    RemoteProtocolError,
)
from ..protocol import v3
from ..protocol.limits import V3_OVERHEAD, pieces
from .response import CLIENT_CHECK_INTERVAL
from .websocket import ConnectionClosed, RouterWebSocket

if TYPE_CHECKING:
    from .pool import ConnectorSocket
    from .proxy import ClientHandler
    from .response import ResponseState

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
        self.error = error


#: Writes a DATA payload to the client without blocking; returns what did not fit.
DirectWriter = Callable[[bytes], bytes]


class RouterStream:
    """One request on a v3 socket: frames in, window accounting for what we send.

    While the client's thread waits with nothing to do, it may lend the stream a
    :data:`DirectWriter` (:meth:`write_directly`): the reader thread then writes each DATA
    payload to the client itself when the client's socket takes it at once, and acknowledges
    it, with no thread hand-off. Whatever does not fit, and every other frame, goes to the
    client's thread as before; taking an event takes the writer back, so the two threads never
    write to the client at the same time.
    """

    def __init__(self, session: V3Session, stream_id: int) -> None:
        self.session = session
        self.id = stream_id
        self.window = v3.SendWindow()
        self._cond = threading.Condition()
        self._events: collections.deque[v3.Frame | _Closed | _Leftover | _DirectFailed] = (
            collections.deque())
        self._buffered = 0
        self.overflowed = False
        self._direct: DirectWriter | None = None
        #: When the reader last wrote a DATA payload to the client itself (monotonic).
        self.last_direct = 0.0

    # reader thread side
    def put(self, event: v3.Frame | _Closed) -> None:
        ack = 0
        reset = False
        with self._cond:
            direct = self._direct
            if self.overflowed and isinstance(event, v3.Frame):
                return  # reset for ignoring flow control: what it still sends is dropped
            if (direct is not None and not self._events and isinstance(event, v3.Frame)
                    and event.type == v3.DATA and event.payload and not event.end_stream):
                ack = self._write_directly(direct, event.payload)
            else:
                if isinstance(event, v3.Frame):
                    self._buffered += len(event.payload)
                    if self._buffered > STREAM_BUFFER_LIMIT:
                        # the connector sent far past its window: reset the stream and drop
                        # the rest, so memory stays bounded and the other streams go on
                        self.overflowed = reset = True
                self._events.append(event)
                self._cond.notify_all()
        if reset:
            log.warning("stream %d: the connector ignored flow control (%d bytes unread); "
                        "resetting the stream", self.id, STREAM_BUFFER_LIMIT)
            _reset(self, v3.RST_PROTOCOL_ERROR, "flow control ignored")
        if ack:
            try:
                self.session.send(v3.window_update_frame(self.id, ack))
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
        self.last_direct = time.monotonic()
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
        with self._cond:
            if self.window.acked(n):  # only a resumed sender needs waking
                self._cond.notify_all()

    # worker side
    def get(self, timeout: float) -> v3.Frame | _Closed | _Leftover | _DirectFailed | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._events, timeout):
                return None
            self._direct = None  # from here on only the client's thread writes
            event = self._events.popleft()
            if isinstance(event, v3.Frame):
                self._buffered -= len(event.payload)
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

    def has_events(self) -> bool:
        with self._cond:
            return bool(self._events)

    def send(self, frame: bytes, payload_len: int) -> None:
        with self._cond:
            self.window.sent(payload_len)
        self.session.send(frame)


class V3Session:
    """The streams of one v3 websocket."""

    def __init__(self) -> None:
        self.ws: RouterWebSocket | None = None
        self._lock = threading.Lock()
        self._streams: dict[int, RouterStream] = {}
        self._next_id = 1
        self._draining = False
        self._closed = False

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._streams)

    def send(self, frame: bytes) -> None:
        assert self.ws is not None
        self.ws.send(frame)

    def send_many(self, frames: list[bytes]) -> None:
        assert self.ws is not None
        self.ws.send_many(frames)

    def open_stream(self) -> RouterStream:
        with self._lock:
            if self._closed or self._draining:
                raise ConnectionClosed(1001, "socket closing")
            stream_id = self._next_id
            self._next_id = 1 if stream_id >= v3.MAX_STREAM_ID else stream_id + 1
            stream = RouterStream(self, stream_id)
            self._streams[stream_id] = stream
            return stream

    def end_stream(self, stream: RouterStream) -> None:
        with self._lock:
            self._streams.pop(stream.id, None)
            close_now = self._draining and not self._streams
        if close_now and self.ws is not None:
            self.ws.close(1001, "Deregistered")

    def drain(self) -> None:
        """Deregistration: close with 1001 once no stream is in flight."""
        with self._lock:
            self._draining = True
            close_now = not self._streams
        if close_now and self.ws is not None:
            self.ws.close(1001, "Deregistered")

    # -- reader thread -----------------------------------------------------------------------

    def dispatch(self, msg: str | bytes) -> None:
        if isinstance(msg, str):
            return  # text messages on a v3 socket are ignored
        try:
            frame = v3.decode(msg)
        except RemoteProtocolError as err:
            log.warning("dropping malformed v3 message: %s", err)
            return
        with self._lock:
            stream = self._streams.get(frame.stream_id)
        if stream is None:
            return  # unknown or finished stream: dropped
        if frame.type == v3.WINDOW_UPDATE:
            try:
                stream.acked(frame.window_increment())
            except RemoteProtocolError as err:
                log.warning("stream %d: %s", frame.stream_id, err)
        elif frame.type in v3.KNOWN_TYPES:
            stream.put(frame)  # unknown frame types are dropped

    def on_socket_closed(self, ws: RouterWebSocket) -> None:
        code = ws.close_reason if ws.close_received else None
        with self._lock:
            self._closed = True
            streams = list(self._streams.values())
        for stream in streams:
            stream.put(_Closed(int(code) if code is not None else None))


# -- the client worker's side ------------------------------------------------------------------


def send_head(stream: RouterStream, text: str, end_stream: bool) -> None:
    for frame in v3.header_frames(stream.id, text, end_stream=end_stream):
        stream.send(frame, len(frame) - 6)


def exchange(handler: ClientHandler, sock: ConnectorSocket, stream: RouterStream,
             length: int | None) -> None:
    """Send the body (the head is sent) over ``stream`` and relay the response."""
    idle = handler.core.config.idle_timeout
    completed = False
    try:
        if length != 0:
            _send_body(handler, stream, idle, sock.message_limit)
        _relay(handler, stream, idle)
        completed = True
    except (ConnectionClosed, OSError) as err:
        if handler._response_started:
            raise handler.aborted(f"connector socket failed: {err!r}") from err
        raise BadGateway(f"connector socket failed: {err!r}") from err
    finally:
        if not completed:
            _reset(stream, v3.RST_CLIENT_GONE, "request ended early")
        stream.session.end_stream(stream)


def _reset(stream: RouterStream, code: int, message: str) -> None:
    try:
        stream.session.send(v3.rst_frame(stream.id, code, message))
    except (ConnectionClosed, OSError):
        pass


def _send_body(handler: ClientHandler, stream: RouterStream, idle: float,
               message_limit: int) -> None:
    size = message_limit - V3_OVERHEAD
    for chunk in handler.request_body:
        for data in pieces(chunk, size):
            if not stream.wait_writable(idle):
                raise GatewayTimeout("connector sent no WINDOW_UPDATE for the request body")
            if stream.has_events():
                return  # the connector answered (or reset) early: stop uploading
            stream.send(v3.data_frame(stream.id, data), len(data))
    stream.send(v3.data_frame(stream.id, b"", end_stream=True), 0)
    handler.close_connection = not handler._keep_alive


def _relay(handler: ClientHandler, stream: RouterStream, idle: float) -> None:
    try:
        _relay_events(handler, stream, idle)
    finally:
        stream.take_back()


def _direct_writer(handler: ClientHandler, response: ResponseState) -> DirectWriter | None:
    """What the reader thread may use to write DATA to this client: plain TCP only (a TLS
    socket has no non-blocking send on a blocking socket), and only when a body goes out."""
    sock = handler.connection
    if isinstance(sock, ssl.SSLSocket) or not response.body_allowed:
        return None
    return functools.partial(response.try_write, sock)


def _relay_events(handler: ClientHandler, stream: RouterStream, idle: float) -> None:
    assembler = v3.HeaderAssembler()
    response: ResponseState | None = None
    direct: DirectWriter | None = None
    acks: list[bytes] = []
    last_data = time.monotonic()
    while True:
        if not stream.has_events():  # nothing more at hand: send what we have
            if response is not None:
                response.writer.flush()
            if acks:
                stream.session.send_many(acks)
                acks = []
            if direct is not None:
                stream.write_directly(direct)
        event = stream.get(CLIENT_CHECK_INTERVAL)
        if event is None:
            if handler.client_gone():
                raise ClientGone("client disconnected while waiting for the connector")
            if time.monotonic() - max(last_data, stream.last_direct) < idle:
                continue
            if response is None:
                raise GatewayTimeout(f"no response from connector in {idle:.0f}s")
            raise handler.aborted(f"no data from connector in {idle:.0f}s", "idle_timeout")
        last_data = time.monotonic()
        if isinstance(event, _DirectFailed):
            try:  # no local may keep the error: its traceback holds this frame (a cycle)
                raise event.error
            finally:
                del event
        if isinstance(event, _Leftover):
            assert response is not None
            response.writer.write_raw(event.data)
            acks.append(v3.window_update_frame(stream.id, event.ack))
            continue
        if stream.overflowed:
            raise _fail(response, handler, "connector ignored flow control")
        if isinstance(event, _Closed):
            code = event.code
            if response is None:
                if code == 1008:
                    raise BadRequest("connector closed with 1008 (policy violation)")
                raise BadGateway(f"connector socket closed with {code} before responding")
            raise handler.aborted(f"connector socket closed with {code} mid-response")
        if event.type == v3.RST_STREAM:
            code, message = event.rst_code()
            raise _fail(response, handler, f"connector reset the stream ({code} {message})")
        if event.type == v3.HEADER:
            if response is not None:
                raise _fail(response, handler, "second response head")
            try:
                text = assembler.feed(event)
            except RemoteProtocolError as err:
                raise ConnectorProtocolError(f"bad response head: {err}") from err
            acks.append(v3.window_update_frame(stream.id, len(event.payload)))
            if text is not None:
                response = handler.start_response(text)
                direct = _direct_writer(handler, response)
            if event.end_stream and response is not None:
                response.finish()
                _last_acks(stream, acks)
                return
            continue
        if event.type == v3.DATA:
            if response is None:
                raise ConnectorProtocolError("connector sent DATA before a response head")
            if event.payload:
                response.write(event.payload)
                acks.append(v3.window_update_frame(stream.id, len(event.payload)))
                if len(event.payload) >= BULK and not event.end_stream:
                    # bulk data: acknowledge at once, or the connector's window runs dry
                    response.writer.flush()
                    stream.session.send_many(acks)
                    acks = []
            if event.end_stream:
                response.finish()
                _last_acks(stream, acks)
                return


def _last_acks(stream: RouterStream, acks: list[bytes]) -> None:
    """Acknowledge the frames that completed a response. A connector may close its socket
    right after its last frame (asgi-cc does on shutdown): the response is complete all the
    same, so a socket closed by then is no failure."""
    if not acks:
        return
    try:
        stream.session.send_many(acks)
    except (ConnectionClosed, OSError) as err:
        log.debug("stream %d complete; its last WINDOW_UPDATE not sent: %r", stream.id, err)


def _fail(response: object, handler: ClientHandler, reason: str) -> Exception:
    if response is None:
        return BadGateway(reason)
    return handler.aborted(reason)


