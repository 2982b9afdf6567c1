"""What the router writes back to a client: the response head and framing, and its helpers."""
from __future__ import annotations

import http

from ..errors import ConnectorProtocolError, RemoteProtocolError
from ..hooks import Reject
from ..protocol import ResponseHead, filter_response_headers, parse_response_head
from .exchange import Aborted, Exchange
from .websocket import RouterWebSocket

#: While waiting on a connector, the client connection is checked this often (seconds).
CLIENT_CHECK_INTERVAL = 0.25


def start_response(exchange: Exchange, text: str,
                   ws: RouterWebSocket | None = None) -> ResponseState:
    """Parse the connector's response head and write it to the client. A bad head closes
    ``ws`` (v1: the socket carries only this request) with the code that says why."""
    if len(text) > exchange.config.max_header_bytes:
        if ws is not None:
            ws.close(1009, "response head too large")
        raise ConnectorProtocolError(f"response head of {len(text)} characters is too large")
    try:
        head = parse_response_head(text)
    except RemoteProtocolError as err:
        if ws is not None:
            ws.close(1002, "bad response head")
        raise ConnectorProtocolError(f"bad response head from connector: {err}") from err
    if head.status < 200:
        if ws is not None:
            ws.close(1002, "informational status")
        raise ConnectorProtocolError(f"connector answered with status {head.status}")
    return ResponseState(exchange, head)


class ResponseState:
    """Framing of one response to the client: Content-Length kept, otherwise chunked."""

    def __init__(self, exchange: Exchange, head: ResponseHead) -> None:
        self.exchange = exchange
        self.writer = writer = exchange.writer
        self.sink = exchange.sink
        headers = filter_response_headers(head.headers,
                                          keep_server=exchange.config.proxy_server_header)
        status, reason = head.status, head.reason.strip()
        if exchange.info is not None:  # listeners may change the status and headers
            status, headers = exchange.target_headers_received(status, headers)
            if status != head.status:
                reason = ""
        lengths = {v.strip() for n, v in headers if n.lower() == "content-length"}
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            raise ConnectorProtocolError(f"invalid Content-Length from connector: {lengths}")
        self.expected = int(lengths.pop()) if lengths else None
        self.body_allowed = not (
            exchange.method == "HEAD" or status in (204, 304) or status < 200
        )
        if status == 204:
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        if self.body_allowed and self.expected is None:
            if exchange.version == "HTTP/1.1":
                headers.append(("Transfer-Encoding", "chunked"))
                writer.chunked = True
            else:
                exchange.close_connection = True
        if not any(n.lower() == "x-request-id" for n, _ in headers):
            headers.append(("X-Request-Id", exchange.request_id))
        if exchange.close_connection or exchange.core.draining:
            headers.append(("Connection", "close"))
        if not reason or not reason.isascii() or reason.isdigit():  # crank4go: "200 200"
            reason = phrase(status)
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines.extend(f"{n}: {v}" for n, v in headers)
        try:
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError as err:
            raise ConnectorProtocolError("response header is not latin-1") from err
        exchange.response_head_written(status)
        writer.write(data)
        self.sent = 0
        #: Whether a reader thread may write the body with :meth:`try_write`.
        self.can_try = self.body_allowed and self.sink.can_try

    def write(self, data: bytes) -> None:
        if not self.body_allowed:
            return
        self._count(data)
        self.writer.write_body(data)

    def _count(self, data: bytes) -> None:
        if self.expected is not None and self.sent + len(data) > self.expected:
            raise Aborted("connector sent more bytes than its Content-Length", "bad_response")
        self.sent += len(data)
        self.exchange.response_body_chunk(data)

    def try_write(self, data: bytes) -> bytes:
        """:meth:`write` without blocking: returns the framed bytes the client's socket did
        not take, for :meth:`write_rest` (plain TCP only: see :attr:`can_try`)."""
        if not self.body_allowed or not data:
            return b""
        self._count(data)
        return self.sink.try_write(self.writer.frame_pending(data))

    def write_rest(self, rest: bytes) -> None:
        """Write what :meth:`try_write` left over (blocking), before anything else."""
        self.writer.write_raw(rest)

    def deliver(self, data: bytes) -> None:
        """:meth:`write` from another thread that may wait on this client (the v1 reader)."""
        self.sink.write(self.write, data)

    def flush(self) -> None:
        self.sink.write(self.writer.flush)

    def finish(self) -> None:
        if self.body_allowed and self.expected is not None and self.sent != self.expected:
            raise Aborted(f"connector sent {self.sent} of {self.expected} bytes", "bad_response")
        if self.body_allowed:
            self.writer.finish()
        else:
            self.writer.flush()


def error_response(status: int, text: str, request_id: str | None, close: bool,
                   head: bool = False) -> bytes:
    """A plain-text error response; ``head``: the request was HEAD (no body)."""
    reason = phrase(status)
    body = f"{status} {reason}: {text}\n".encode("utf-8", "replace")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    if request_id is not None:
        lines.append(f"X-Request-Id: {request_id}")
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head else data + body


def rejection_response(rej: Reject, request_id: str, close: bool, head: bool = False) -> bytes:
    """A listener's own answer (:class:`~crank_sync.hooks.Reject`): its status, headers and
    body, framed by us (its Content-Length, Transfer-Encoding and Connection are ours)."""
    framing = ("content-length", "transfer-encoding", "connection")
    headers = [(n, v) for n, v in rej.headers if n.lower() not in framing]
    names = {n.lower() for n, _ in headers}
    if rej.body and "content-type" not in names:
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    if "x-request-id" not in names:
        headers.append(("X-Request-Id", request_id))
    headers.append(("Content-Length", str(len(rej.body))))
    if close:
        headers.append(("Connection", "close"))
    lines = [f"HTTP/1.1 {rej.status} {phrase(rej.status)}"]
    lines.extend(f"{n}: {v}" for n, v in headers)
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return data if head else data + rej.body


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
