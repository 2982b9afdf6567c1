"""The client worker's side of Cranker v3: one exchange over one stream.

The worker sends the request (head, then the body as the connector's window allows) and
relays the response events the socket's reader thread hands the stream; while it waits with
nothing to do, it lends the stream a direct writer, so the reader writes DATA to the client
itself when the client's socket takes it at once (:class:`~crank_sync.router.sink.ClientSink`).
"""
from __future__ import annotations

import logging
import time

from ..errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    ConnectorProtocolError,
    GatewayTimeout,
)
from ..protocol import v3
from ..protocol import v3_session as core
from ..protocol.limits import V3_OVERHEAD, pieces
from .exchange import Exchange
from .pool import ConnectorSocket
from .response import CLIENT_CHECK_INTERVAL, ResponseState, start_response
from .v3 import (
    BULK,
    DirectWriter,
    Item,
    RouterStream,
    _Closed,
    _DirectFailed,
    _Leftover,
    reset_stream,
)
from .websocket import ConnectionClosed

log = logging.getLogger(__name__)


def send_head(stream: RouterStream, text: str, end_stream: bool) -> None:
    for frame in v3.header_frames(stream.id, text, end_stream=end_stream):
        stream.send(frame, len(frame) - 6)


def exchange(ex: Exchange, sock: ConnectorSocket, stream: RouterStream,
             length: int | None) -> None:
    """Send the body (the head is sent) over ``stream`` and relay the response."""
    idle = ex.config.idle_timeout
    completed = False
    try:
        if length != 0:
            _send_body(ex, stream, idle, sock.message_limit)
        _relay(ex, stream, idle)
        completed = True
    except (ConnectionClosed, OSError) as err:
        if ex.response_started:
            raise ex.aborted(f"connector socket failed: {err!r}") from err
        raise BadGateway(f"connector socket failed: {err!r}") from err
    finally:
        # a stream that overflowed is reset by the reader thread, with the reason (1002): a
        # second RST_STREAM from here could reach the connector first
        if not completed and not stream.overflowed:
            reset_stream(stream, v3.RST_CLIENT_GONE, "request ended early")
        stream.session.end_stream(stream)


def _send_body(ex: Exchange, stream: RouterStream, idle: float, message_limit: int) -> None:
    size = message_limit - V3_OVERHEAD
    for chunk in ex.request_body:
        for data in pieces(chunk, size):
            if not stream.wait_writable(idle):
                raise GatewayTimeout("connector sent no WINDOW_UPDATE for the request body")
            if stream.has_events():
                return  # the connector answered (or reset) early: stop uploading
            stream.send(v3.data_frame(stream.id, data), len(data))
    stream.send(v3.data_frame(stream.id, b"", end_stream=True), 0)
    ex.request_body_sent()


def _relay(ex: Exchange, stream: RouterStream, idle: float) -> None:
    try:
        _Relay(ex, stream, idle).run()
    finally:
        stream.take_back()


def relay_from(ex: Exchange, stream: RouterStream, first: Item) -> None:
    """Relay a response whose first event was already taken (an upgrade the service refused);
    the caller ends the stream."""
    try:
        relay = _Relay(ex, stream, ex.config.idle_timeout)
        if not relay.handle(first):
            relay.run()
        else:
            _last_acks(stream, relay.acks)
    except (ConnectionClosed, OSError) as err:
        if ex.response_started:
            raise ex.aborted(f"connector socket failed: {err!r}") from err
        raise BadGateway(f"connector socket failed: {err!r}") from err
    finally:
        stream.take_back()


def _direct_writer(response: ResponseState) -> DirectWriter | None:
    """What the reader thread may use to write DATA to this client: plain TCP only (a TLS
    socket has no non-blocking send on a blocking socket), and only when a body goes out."""
    return response.try_write if response.can_try else None


class _Relay:
    """The client's thread relaying one stream's response: session events in, the client
    written, acknowledgements (payload sizes) gathered and sent when nothing more is at hand."""

    def __init__(self, ex: Exchange, stream: RouterStream, idle: float) -> None:
        self.ex, self.stream, self.idle = ex, stream, idle
        self.response: ResponseState | None = None
        self.direct: DirectWriter | None = None
        self.acks: list[int] = []
        self.last_data = time.monotonic()

    def run(self) -> None:
        stream = self.stream
        while True:
            if not stream.has_events():
                self._idle()
            event = stream.get(CLIENT_CHECK_INTERVAL)
            if event is None:
                self._check_waiting()
                continue
            self.last_data = time.monotonic()
            if self.handle(event):
                _last_acks(stream, self.acks)
                return

    def _idle(self) -> None:
        """Nothing more at hand: send what we have, lend the reader the direct writer."""
        if self.response is not None:
            self.response.writer.flush()
        if self.acks:
            self.stream.session.ack(self.stream.id, self.acks)
            self.acks = []
        if self.direct is not None:
            self.stream.write_directly(self.direct)

    def _check_waiting(self) -> None:
        if self.ex.client_gone():
            raise ClientGone("client disconnected while waiting for the connector")
        last = max(self.last_data, self.ex.sink.last_activity)
        if time.monotonic() - last < self.idle:
            return
        if self.response is None:
            raise GatewayTimeout(f"no response from connector in {self.idle:.0f}s")
        raise self.ex.aborted(f"no data from connector in {self.idle:.0f}s", "idle_timeout")

    def handle(self, event: Item) -> bool:
        """Act on one event; True when the response is complete."""
        if type(event) is core.DataReceived and not self.stream.overflowed:
            return self._data(event)
        if type(event) is _DirectFailed:
            self._raise_direct_failure(event)
        if type(event) is _Leftover:
            assert self.response is not None
            self.response.write_rest(event.data)
            self.acks.append(event.ack)
            return False
        if self.stream.overflowed:
            raise self._fail("connector ignored flow control")
        if isinstance(event, core.HeadReceived):
            return self._head(event)
        if isinstance(event, _Closed):
            raise self._closed(event.code)
        if isinstance(event, core.StreamReset):
            raise self._fail(f"connector reset the stream ({event.code} {event.message})")
        assert isinstance(event, core.StreamError)
        if self.response is None:
            raise ConnectorProtocolError(f"bad response from the connector: {event.reason}")
        raise self.ex.aborted(f"connector broke the protocol: {event.reason}")

    @staticmethod
    def _raise_direct_failure(event: _DirectFailed) -> None:
        error, event.error = event.error, None
        assert error is not None
        try:  # nothing may keep the error once raised: its traceback holds this frame
            raise error
        finally:
            del error

    def _closed(self, code: int | None) -> Exception:
        if self.response is not None:
            return self.ex.aborted(f"connector socket closed with {code} mid-response")
        if code == 1008:
            return BadRequest("connector closed with 1008 (policy violation)")
        return BadGateway(f"connector socket closed with {code} before responding")

    def _head(self, event: core.HeadReceived) -> bool:
        self.acks.extend(event.frame_sizes)
        self.response = start_response(self.ex, event.text)
        self.direct = _direct_writer(self.response)
        if event.end_stream:
            self.response.finish()
            return True
        return False

    def _data(self, event: core.DataReceived) -> bool:
        response = self.response
        assert response is not None  # the session lets no DATA through before a head
        data = event.data
        if data:
            response.write(data)
            self.acks.append(len(data))
            if len(data) >= BULK and not event.end_stream:
                # bulk data: acknowledge at once, or the connector's window runs dry
                response.writer.flush()
                self.stream.session.ack(self.stream.id, self.acks)
                self.acks = []
        if event.end_stream:
            response.finish()
            return True
        return False

    def _fail(self, reason: str) -> Exception:
        if self.response is None:
            return BadGateway(reason)
        return self.ex.aborted(reason)


def _last_acks(stream: RouterStream, acks: list[int]) -> None:
    """Acknowledge the frames that completed a response. A connector may close its socket
    right after its last frame (asgi-cc does on shutdown): the response is complete all the
    same, so a socket closed by then is no failure."""
    if not acks:
        return
    try:
        stream.session.ack(stream.id, acks)
    except (ConnectionClosed, OSError) as err:
        log.debug("stream %d complete; its last WINDOW_UPDATE not sent: %r", stream.id, err)
