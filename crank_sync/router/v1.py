"""The router's side of Cranker v1: one request per connector websocket."""
from __future__ import annotations

import logging
import time

from ..errors import (
    BadGateway,
    BadRequest,
    ClientGone,
    ConnectorProtocolError,
    GatewayTimeout,
    SocketClosedBeforeResponse,
)
from ..protocol import MARKER_BODY_ENDED
from ..protocol.limits import pieces
from .exchange import Aborted, Exchange
from .pool import ConnectorSocket
from .response import CLIENT_CHECK_INTERVAL, ResponseState, start_response
from .websocket import ConnectionClosed, RouterWebSocket

log = logging.getLogger(__name__)

#: Close codes a connector uses for "response complete" (1005: a close frame without a code).
_NORMAL_CLOSE = (1000, 1005)
#: Before a response, these (or a socket lost without a close frame) mean the peer closed the
#: socket as the request went out, not that the request failed: it may be retried.
_CLOSED_UNANSWERED = (None, 1000, 1001, 1005, 1006)


def exchange(ex: Exchange, sock: ConnectorSocket, length: int | None) -> None:
    """Send the body (the head is sent) down ``sock`` and relay the response; the socket is
    closed with 1001 unless the connector completed the exchange."""
    finished = False
    try:
        if length != 0:
            _send_body(ex, sock)
        finished = _relay(ex, sock)
    finally:
        if not finished:
            sock.ws.close(1001, "request ended early")
        ex.core.registry.remove(sock)


def _send_body(ex: Exchange, sock: ConnectorSocket) -> None:
    try:
        for data in ex.request_body:
            for piece in pieces(data, sock.message_limit):
                sock.ws.send(piece)
        sock.ws.send(MARKER_BODY_ENDED)
    except (ConnectionClosed, OSError) as err:
        # the connector gave up mid-upload; its close code tells the client why
        log.info("connector socket closed during request body: %r", err)
        return
    ex.request_body_sent()


def _relay(ex: Exchange, sock: ConnectorSocket) -> bool:
    """Wait for the connector's response head, then relay the body (:func:`_relay_body`).
    True when the connector completed the response."""
    ws = sock.ws
    last_data = time.monotonic()
    while True:
        try:
            msg = ws.receive(timeout=CLIENT_CHECK_INTERVAL)
        except ConnectionClosed:
            break
        if msg is None:
            _check_waiting(ex, ws, last_data)
            continue
        if isinstance(msg, str):
            return _relay_body(ex, sock, start_response(ex, msg, ws))
        ws.close(1002, "body before response head")
        raise ConnectorProtocolError("connector sent body bytes before a response head")
    code = ws.close_reason if ws.close_received else None
    if code == 1008:
        raise BadRequest(f"connector closed with 1008 (policy violation){_said(ws)}")
    if code in _CLOSED_UNANSWERED:
        raise SocketClosedBeforeResponse(
            f"connector closed with {_closed_with(ws)} before responding")
    raise BadGateway(f"connector closed with {_closed_with(ws)} before responding")


def relay_response(ex: Exchange, sock: ConnectorSocket, text: str) -> bool:
    """Relay a response whose head ``text`` has arrived (an upgrade the service refused)."""
    return _relay_body(ex, sock, start_response(ex, text, sock.ws))


def _check_waiting(ex: Exchange, ws: RouterWebSocket, last_data: float) -> None:
    """No response head yet: raise when the client left or the connector idled."""
    if ex.client_gone():
        raise ClientGone("client disconnected while waiting for the connector")
    idle = ex.config.idle_timeout
    if time.monotonic() - last_data < idle:
        return
    ws.close(1001, "idle timeout")
    raise GatewayTimeout(f"no response from connector in {idle:.0f}s")


def _closed_with(ws: RouterWebSocket) -> str:
    """The connector's close code and reason (``1011: target failed: connection refused``)."""
    if not ws.close_received:
        return "no close frame"
    return f"{ws.close_reason}{_said(ws)}"


def _said(ws: RouterWebSocket) -> str:
    message = (ws.close_message or "").strip() if ws.close_received else ""
    # the reason reaches the client's 502 body and the log: printable text only
    message = "".join(c if c.isprintable() else "?" for c in message[:123])
    return f": {message}" if message else ""


def _relay_body(ex: Exchange, sock: ConnectorSocket, response: ResponseState) -> bool:
    """The head is written: the socket's reader thread writes the body to the client itself
    (a v1 socket carries nothing else), and this thread watches for the end, the client
    leaving and the idle timeout. True when the connector completed the response."""
    cfg = ex.config
    ws = sock.ws

    def deliver(msg: str | bytes) -> None:
        if isinstance(msg, bytes):  # v1 sends nothing textual after the head: ignored
            response.deliver(msg)

    sink = ex.sink
    sink.touch()
    try:
        ws.hand_over(deliver, response.flush)
    except BaseException:
        # the failure propagates from here: no copy may stay behind (its traceback holds
        # this frame, which holds the sink: a cycle only the garbage collector would free)
        sink.error = ws.sink_error = None
        raise
    try:
        while not ws.wait_done(CLIENT_CHECK_INTERVAL):
            if ex.client_gone():
                raise ClientGone("client disconnected during the response")
            # a write to a slow client is bounded by the client socket's own timeout
            if not sink.busy and time.monotonic() - sink.last_activity >= cfg.idle_timeout:
                ws.close(1001, "idle timeout")
                raise Aborted(f"no data from connector in {cfg.idle_timeout:.0f}s", "idle_timeout")
    except BaseException:
        sink.error = ws.sink_error = None  # as above
        raise
    finally:
        ws.detach()  # from here on only this thread writes to the client
    ws.sink_error = None  # the reader's copy: its traceback holds the reader's frames
    if sink.error is not None:
        error, sink.error = sink.error, None
        try:  # nothing may keep the error once raised: its traceback holds this frame, which
            raise error  # holds the sink (a cycle only the garbage collector would free)
        finally:
            del error
    code = ws.close_reason if ws.close_received else None
    if code not in _NORMAL_CLOSE:
        raise Aborted(f"connector closed with {_closed_with(ws)} mid-response")
    response.finish()
    return True
