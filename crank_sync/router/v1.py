"""The router's side of Cranker v1: one request per connector websocket."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

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
from .pool import ConnectorSocket
from .response import CLIENT_CHECK_INTERVAL, Aborted, ResponseState
from .websocket import ConnectionClosed, RouterWebSocket

if TYPE_CHECKING:
    from .proxy import ClientHandler

log = logging.getLogger(__name__)

#: Close codes a connector uses for "response complete" (1005: a close frame without a code).
_NORMAL_CLOSE = (1000, 1005)
#: Before a response, these (or a socket lost without a close frame) mean the peer closed the
#: socket as the request went out, not that the request failed: it may be retried.
_CLOSED_UNANSWERED = (None, 1000, 1001, 1005, 1006)


def exchange(handler: ClientHandler, sock: ConnectorSocket, length: int | None) -> None:
    """Send the body (the head is sent) down ``sock`` and relay the response; the socket is
    closed with 1001 unless the connector completed the exchange."""
    finished = False
    try:
        if length != 0:
            _send_body(handler, sock)
        finished = _relay(handler, sock)
    finally:
        if not finished:
            sock.ws.close(1001, "request ended early")
        handler.core.registry.remove(sock)


def _send_body(handler: ClientHandler, sock: ConnectorSocket) -> None:
    try:
        for data in handler.request_body:
            for piece in pieces(data, sock.message_limit):
                sock.ws.send(piece)
        sock.ws.send(MARKER_BODY_ENDED)
    except (ConnectionClosed, OSError) as err:
        # the connector gave up mid-upload; its close code tells the client why
        log.info("connector socket closed during request body: %r", err)
        return
    handler.close_connection = not handler._keep_alive

def _relay(handler: ClientHandler, sock: ConnectorSocket) -> bool:
    """Stream the connector's answer to the client. True when it completed normally."""
    cfg = handler.core.config
    ws = sock.ws
    response: ResponseState | None = None
    last_data = time.monotonic()
    while True:
        if response is not None and not ws.has_pending():
            response.writer.flush()  # nothing more at hand: what we have goes out now
        try:
            msg = ws.receive(timeout=CLIENT_CHECK_INTERVAL)
        except ConnectionClosed:
            break
        if msg is None:
            if handler.client_gone():
                raise ClientGone("client disconnected while waiting for the connector")
            if time.monotonic() - last_data < cfg.idle_timeout:
                continue
            ws.close(1001, "idle timeout")
            if response is None:
                raise GatewayTimeout(f"no response from connector in {cfg.idle_timeout:.0f}s")
            raise Aborted(f"no data from connector in {cfg.idle_timeout:.0f}s", "idle_timeout")
        if isinstance(msg, str):
            if response is None:
                response = handler.start_response(msg, ws)
                return _relay_body(handler, sock, response)
            last_data = time.monotonic()
            continue  # v1 sends nothing textual after the head; tolerate and ignore
        if response is None:
            ws.close(1002, "body before response head")
            raise ConnectorProtocolError("connector sent body bytes before a response head")
        response.write(msg)
        last_data = time.monotonic()
    code = ws.close_reason if ws.close_received else None
    if response is None:
        if code == 1008:
            raise BadRequest(f"connector closed with 1008 (policy violation){_said(ws)}")
        if code in _CLOSED_UNANSWERED:
            raise SocketClosedBeforeResponse(
                f"connector closed with {_closed_with(ws)} before responding")
        raise BadGateway(f"connector closed with {_closed_with(ws)} before responding")
    if code not in _NORMAL_CLOSE:
        raise Aborted(f"connector closed with {_closed_with(ws)} mid-response")
    response.finish()
    return True


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


def _relay_body(handler: ClientHandler, sock: ConnectorSocket, response: ResponseState) -> bool:
    """The head is written: the socket's reader thread writes the body to the client itself
    (a v1 socket carries nothing else), and this thread watches for the end, the client
    leaving and the idle timeout. True when the connector completed the response."""
    cfg = handler.core.config
    ws = sock.ws

    def sink(msg: str | bytes) -> None:
        if isinstance(msg, bytes):  # v1 sends nothing textual after the head: ignored
            response.write(msg)

    ws.hand_over(sink, response.writer.flush)
    try:
        while not ws.wait_done(CLIENT_CHECK_INTERVAL):
            if handler.client_gone():
                raise ClientGone("client disconnected during the response")
            # a write to a slow client is bounded by the client socket's own timeout
            if not ws.sink_busy and time.monotonic() - ws.last_delivery >= cfg.idle_timeout:
                ws.close(1001, "idle timeout")
                raise Aborted(f"no data from connector in {cfg.idle_timeout:.0f}s", "idle_timeout")
    finally:
        ws.detach()  # from here on only this thread writes to the client
    if ws.sink_error is not None:
        try:  # raised here, it must not stay on ws: its traceback holds this frame, which
            raise ws.sink_error  # holds ws (a cycle only the garbage collector would free)
        finally:
            ws.sink_error = None
    code = ws.close_reason if ws.close_received else None
    if code not in _NORMAL_CLOSE:
        raise Aborted(f"connector closed with {_closed_with(ws)} mid-response")
    response.finish()
    return True
