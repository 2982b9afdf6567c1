"""One client request as it crosses the router: :class:`Exchange`.

The client's handler (router/proxy.py) reads and checks the request head, builds an
:class:`Exchange` and forwards it; the v1 and v3 relays (router/v1.py, router/v3.py) and the
response framing (router/response.py) work on the exchange alone. It carries the request head
as it is sent on, the body, the response writer and the client's socket (:class:`ClientSink`),
the client probe, keep-alive, and what the access log and the metrics report.

The points where a request's life can be watched are small methods here
(:meth:`Exchange.before_proxy`, :meth:`~Exchange.target_headers_received`,
:meth:`~Exchange.request_body_chunk`, :meth:`~Exchange.response_body_chunk`,
:meth:`~Exchange.complete`).
"""
from __future__ import annotations

import itertools
import logging
import random
import re
import select
import socket
import time
from collections.abc import Iterator
from email.message import Message
from typing import Any

from ..errors import Aborted, CrankError
from ..hooks import Headers, ProxyInfo
from ..protocol import RequestHead
from .core import RouterCore
from .http_io import ClientWriter, Reader, Writer, iter_body
from .metrics import UNROUTED
from .sink import ClientSink

HeaderList = list[tuple[str, str]]
log = logging.getLogger("crank_sync.router.proxy")
access_log = logging.getLogger("crank_sync.access")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
#: Request ids name a request in logs and headers; they are not secrets, so no system call
#: for each one (uuid4 reads os.urandom).
_request_ids = random.Random()


def readable_now(sock: Any) -> bool:
    """Is there something to read (or EOF) on ``sock``? poll(), not select(): a busy router
    has far more than 1,024 descriptors, which select() cannot watch."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def request_id_for(headers: Message) -> str:
    """The client's X-Request-Id when it is sane, otherwise a new one."""
    rid = headers.get("X-Request-Id", "")
    if 0 < len(rid) <= 128 and _REQUEST_ID_RE.match(rid):
        return rid
    return f"{_request_ids.getrandbits(128):032x}"


class Exchange:
    """One client request: its head, body and response, and its bookkeeping.

    ``close_connection`` starts as the client asked (``keep_alive``) and is what the handler
    does with the connection afterwards.
    """

    def __init__(self, core: RouterCore, *, method: str, path: str, version: str,
                 request_line: str, headers: Message, client_ip: str, connection: Any,
                 rfile: Reader, wfile: Writer, keep_alive: bool) -> None:
        self.core = core
        self.config = core.config
        self.started = time.monotonic()
        self.method, self.path, self.version = method, path, version
        self.request_line = request_line
        #: The head as the client sent it (the head sent on is built from it).
        self.headers = headers
        self.client_ip = client_ip
        self.connection = connection
        self._rfile = rfile
        self.writer = ClientWriter(wfile)
        self.sink = ClientSink(connection)
        self.keep_alive = keep_alive
        self.close_connection = not keep_alive
        self.request_id = request_id_for(headers)
        #: The client's address for listeners, limits and the access log: the socket's, or
        #: the one a trusted proxy forwarded.
        self.client_address = client_ip
        self.hooks = core.hooks
        #: What listeners see of this exchange (only when there are listeners).
        self.info = ProxyInfo(self) if core.hooks.active else None
        #: The head sent to the connector (forwarding headers added), once it is built.
        self.sent_head: RequestHead | None = None
        self.request_body: Iterator[bytes] = iter(())
        self.response_started = False
        #: Part of the request body may still be unread: the connection cannot be reused.
        self.body_pending = False
        # for the access log and the metrics
        self.status = 0
        self.route = UNROUTED
        self.connector = "-"
        self.component = ""
        self.service_address: tuple[str, int] | None = None
        self.protocol = "-"
        self.socket_wait = 0.0
        self.retries = 0
        self.bytes_in = 0
        self.error: str | None = None
        self.abort_kind: str | None = None
        #: What ended the exchange, if it failed (for listeners' ``info.error``).
        self.failure: BaseException | None = None
        #: A listener answered the client itself (``Reject``).
        self.rejected = False

    @property
    def rfile(self) -> Reader:
        """The client's buffered reader (a websocket tunnel takes what it holds)."""
        return self._rfile

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the request ---------------------------------------------------------------------------

    def open_body(self, length: int | None) -> None:
        """The client's request body, counted. A chunked body's first chunk is read before
        this returns, so a malformed first chunk size is refused before anything is sent on."""
        chunks = self._counted(iter_body(self._rfile, length))
        if length is not None:
            self.request_body = chunks
            return
        first = next(chunks, None)
        self.request_body = itertools.chain([first] if first else [], chunks)

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for data in chunks:
            self.request_body_chunk(data)
            yield data

    def request_body_sent(self) -> None:
        """All of the request body went on: the connection may be kept as the client asked."""
        self.close_connection = not self.keep_alive

    def client_gone(self) -> bool:
        """Has the client closed its connection? (Checked while waiting on a connector.)"""
        try:
            if not readable_now(self.connection):
                return False
            # socket.socket.recv reads the raw stream even under TLS, where only EOF matters
            return socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- the response --------------------------------------------------------------------------

    def aborted(self, reason: str, kind: str = "connector_lost") -> Aborted:
        """The exception that drops the client connection mid-response."""
        return Aborted(reason, kind)

    def response_head_written(self, status: int) -> None:
        self.response_started = True
        self.status = status

    def failed(self, err: CrankError) -> None:
        """``err`` ends the exchange: its status, unless a response had started."""
        self.error = type(err).__name__
        if self.response_started:  # too late for its status: the response is cut short
            self.abort_kind = "bad_response"
        else:
            self.status = err.status

    # -- where a request's life can be watched -------------------------------------------------

    def before_proxy(self, head: RequestHead) -> RequestHead:
        """The head about to be sent to a connector; what it returns is sent (listeners may
        change its headers, or reject the request)."""
        hooks = self.hooks
        if hooks.before_proxy:
            headers = Headers(head.headers)
            hooks.call("on_before_proxy_to_target", hooks.before_proxy, self.request_id,
                       self.info, headers)
            head = RequestHead(method=head.method, target=head.target,
                               headers=tuple(headers.items()), marker=head.marker)
        self.sent_head = head
        return head

    def failed_to_acquire(self) -> None:
        """No connector for the route, or no idle socket in time."""
        if self.hooks.failure_to_acquire:
            self.hooks.call_quietly("on_failure_to_acquire_socket",
                                    self.hooks.failure_to_acquire, self.request_id, self.info)

    def target_headers_received(self, status: int, headers: HeaderList) -> tuple[int, HeaderList]:
        """The connector's response head (its headers as they would go to the client),
        before anything of it is written; the status and headers to write instead."""
        hooks, info = self.hooks, self.info
        if info is None:
            return status, headers
        changed = Headers(headers)
        for new in hooks.call("on_after_target_headers_received", hooks.after_target_headers,
                              self.request_id, info, status, changed):
            if new is not None:
                status = info.status = int(new)
        if hooks.before_responding:
            info.status, info.response_headers = status, changed
            hooks.call("on_before_responding_to_client", hooks.before_responding,
                       self.request_id, info)
            status, changed = info.status or status, info.response_headers
        info.response_headers = changed
        return status, changed.items()

    def request_body_chunk(self, data: bytes) -> None:
        """A piece of the request body was read from the client."""
        self.bytes_in += len(data)
        if self.hooks.request_chunk:
            self.hooks.call("on_request_body_chunk", self.hooks.request_chunk,
                            self.request_id, self.info, data)

    def response_body_chunk(self, data: bytes) -> None:
        """A piece of the response body goes to the client (possibly from a reader thread)."""
        if self.hooks.response_chunk:
            self.hooks.call("on_response_body_chunk", self.hooks.response_chunk,
                            self.request_id, self.info, data)

    def complete(self) -> None:
        """The exchange is over: one access line and the metrics. An exchange cut short
        (client gone, connector lost, idle timeout) is ``outcome=aborted`` with its reason,
        whatever status had gone out: a 200 whose body was cut off is no success."""
        self.sink.error = None  # a failure kept past the exchange ties it into a cycle
        if self.hooks.complete:
            self.hooks.call_quietly("on_complete", self.hooks.complete, self.request_id,
                                    self.info)
        self.failure = self.info = None  # both would tie the exchange into a cycle
        seconds = time.monotonic() - self.started
        out = self.writer.bytes_written
        self.core.metrics.observe(self.route, self.status, seconds, self.bytes_in, out,
                                  self.error, self.abort_kind)
        if access_log.isEnabledFor(logging.INFO):
            aborted, error = self.abort_kind, self.error
            outcome = (f"aborted:{aborted}" if aborted else "error" if error
                       else "rejected" if self.rejected else "ok")
            access_log.info(
                '%s %s "%s %s" route=%s status=%s outcome=%s in=%d out=%d %.1fms connector=%s'
                " protocol=%s request_id=%s retries=%d",
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds)),
                self.client_address, self.method, self.path[:500], self.route,
                self.status or "-", outcome, self.bytes_in, out, seconds * 1000,
                self.connector, self.protocol, self.request_id, self.retries,
            )
