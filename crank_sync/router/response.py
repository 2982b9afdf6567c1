"""What the router writes back to a client: the response framing, and its helpers."""
from __future__ import annotations

import http
import select
import socket
from typing import TYPE_CHECKING, Any

from ..errors import ConnectorProtocolError
from ..protocol import ResponseHead, filter_response_headers

if TYPE_CHECKING:
    from .proxy import ClientHandler

#: While waiting on a connector, the client connection is checked this often (seconds).
CLIENT_CHECK_INTERVAL = 0.25


class Aborted(Exception):
    """The response had started when the exchange failed: the client connection is dropped.

    ``kind`` says why, for the access log and ``crank_requests_aborted_total``:
    ``connector_lost``, ``idle_timeout`` or ``bad_response`` (``client_gone`` is
    :class:`~crank_sync.errors.ClientGone`'s).
    """

    def __init__(self, message: str, kind: str = "connector_lost") -> None:
        super().__init__(message)
        self.kind = kind


def readable_now(sock: Any) -> bool:
    """Is there something to read (or EOF) on ``sock``? poll(), not select(): a busy router
    has far more than 1,024 descriptors, which select() cannot watch."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class ResponseState:
    """Framing of one response to the client: Content-Length kept, otherwise chunked."""

    def __init__(self, handler: ClientHandler, head: ResponseHead) -> None:
        self.handler = handler
        self.writer = handler._writer
        headers = filter_response_headers(head.headers,
                                          keep_server=handler.core.config.proxy_server_header)
        lengths = {v.strip() for n, v in headers if n.lower() == "content-length"}
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            raise ConnectorProtocolError(f"invalid Content-Length from connector: {lengths}")
        self.expected = int(lengths.pop()) if lengths else None
        self.body_allowed = not (
            handler.command == "HEAD" or head.status in (204, 304) or head.status < 200
        )
        if head.status == 204:
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        if self.body_allowed and self.expected is None:
            if handler.request_version == "HTTP/1.1":
                headers.append(("Transfer-Encoding", "chunked"))
                self.writer.chunked = True
            else:
                handler.close_connection = True
        if not any(n.lower() == "x-request-id" for n, _ in headers):
            headers.append(("X-Request-Id", handler.request_id))
        if handler.close_connection or handler.core.draining:
            headers.append(("Connection", "close"))
        reason = head.reason.strip()
        if not reason or not reason.isascii() or reason.isdigit():  # crank4go: "200 200"
            reason = phrase(head.status)
        lines = [f"HTTP/1.1 {head.status} {reason}"]
        lines.extend(f"{n}: {v}" for n, v in headers)
        try:
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError as err:
            raise ConnectorProtocolError("response header is not latin-1") from err
        handler._response_started = True
        self.writer.write(data)
        self.sent = 0

    def write(self, data: bytes) -> None:
        if not self.body_allowed:
            return
        self._count(data)
        self.writer.write_body(data)

    def _count(self, data: bytes) -> None:
        if self.expected is not None and self.sent + len(data) > self.expected:
            raise Aborted("connector sent more bytes than its Content-Length", "bad_response")
        self.sent += len(data)

    def try_write(self, sock: socket.socket, data: bytes) -> bytes:
        """:meth:`write` without blocking: returns what the client's socket did not take."""
        if not self.body_allowed:
            return b""
        self._count(data)
        return self.writer.try_write_body(sock, data)

    def finish(self) -> None:
        if self.body_allowed and self.expected is not None and self.sent != self.expected:
            raise Aborted(f"connector sent {self.sent} of {self.expected} bytes", "bad_response")
        if self.body_allowed:
            self.writer.finish()
        else:
            self.writer.flush()


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
