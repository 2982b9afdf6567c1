"""The client-facing handler: one worker thread per connection, one request at a time.

The worker borrows a connector socket from the registry, sends the request down it, and
streams the response back. Errors map to statuses in one place (:func:`status_for`); once the
response has started, a failure can only abort the client connection.
"""
from __future__ import annotations

import logging
import time
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler

from ..errors import (
    ClientGone,
    CrankError,
    HeadersTooLarge,
    UriTooLong,
)
from ..hooks import Reject
from ..protocol.headers import connection_tokens
from ..protocol.http_head import ClientHead, parse_client_head
from .core import RouterCore
from .exchange import Aborted, Exchange
from .forward import forward
from .http_io import read_request_head
from .metrics import UNROUTED
from .response import error_response, rejection_response

log = logging.getLogger(__name__)



def status_for(err: CrankError) -> int:
    return err.status


class ClientHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "crank_sync"
    core: RouterCore

    def setup(self) -> None:
        self.core = self.server.core  # type: ignore[attr-defined]
        self.timeout = self.core.config.client_timeout  # type: ignore[misc]
        super().setup()

    # -- request head ------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        cfg = self.core.config
        error: CrankError | None = None
        raw: bytes | None = b""
        try:
            # wait (up to client_timeout) for the first byte, then the whole head must arrive
            # within header_timeout however slowly it trickles
            if not self.rfile.peek(1):  # type: ignore[attr-defined]
                self.close_connection = True
                return
            key = self.core.deadlines.add(self.connection, cfg.header_timeout,
                                          f"request head from {self.client_address[0]}")
            try:
                raw = read_request_head(self.rfile, cfg.max_header_bytes)
            except (UriTooLong, HeadersTooLarge) as err:
                error = err
            finally:
                self.core.deadlines.cancel(key)
        except (TimeoutError, OSError, ValueError):
            self.close_connection = True
            return
        if raw is None:
            # the head ended at end-of-file (client gone or deadline), not at a blank line
            log.info("incomplete request head from %s: dropped", self.client_address[0])
            self.close_connection = True
            return
        self.core.busy_connections.add(self.connection)  # from here on, a stop waits for us
        try:
            self._handle_request(raw, error)
        finally:
            self.core.busy_connections.discard(self.connection)

    def _handle_request(self, raw: bytes, error: CrankError | None) -> None:
        self.requestline = self.request_version = self.command = self.path = ""
        try:
            if error is not None:
                raise error
            self._take_head(parse_client_head(raw))
        except CrankError as err:  # nothing of it is sent on: the connection is not reused
            line = raw.split(b"\n", 1)[0].rstrip(b"\r\n")[:200]
            log.info("%d for request line %r from %s: %s", err.status, line,
                     self.client_address[0], err)
            self.core.metrics.observe(UNROUTED, err.status, 0.0, 0, 0, type(err).__name__)
            self.close_connection = True
            self._write_error(err.status, str(err), None, close=True)
            return
        if self._expects_continue() and not self.handle_expect_100():
            return
        self._handle()
        if self.close_connection:
            return
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _take_head(self, head: ClientHead) -> None:
        """Set what BaseHTTPRequestHandler.parse_request would, from a head checked strictly."""
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.requestline = head.request_line
        self.headers = message = HTTPMessage()
        for name, value in head.headers:
            message[name] = value  # appends: duplicates are kept, in order
        tokens = connection_tokens(head.headers)
        if "close" in tokens:
            self.close_connection = True
        else:
            self.close_connection = head.version == "HTTP/1.0" and "keep-alive" not in tokens

    def _expects_continue(self) -> bool:
        return (self.request_version == "HTTP/1.1"
                and self.headers.get("Expect", "").lower() == "100-continue")

    # -- the exchange ------------------------------------------------------------------------

    def _answer_health(self) -> None:
        """The load balancer's check (``health_path``): 200; 503 once the router stops, and
        within ``startup_grace`` of the start until a first connector registered."""
        core = self.core
        draining = core.draining
        starting = (time.monotonic() - core.started_at < core.config.startup_grace
                    and not any(sockets for groups in core.registry.snapshot().values()
                                for sockets in groups.values()))
        state = "draining" if draining else "starting" if starting else "ok"
        status = 200 if state == "ok" else 503
        body = f'{{"status": "{state}"}}\n'.encode()
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Service Unavailable'}\r\n"
                "Content-Type: application/json\r\nCache-Control: no-store\r\n"
                f"Content-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if draining or self.close_connection else "")
                + "\r\n").encode()
        if draining:
            self.close_connection = True
        try:
            self.wfile.write(head if self.command == "HEAD" else head + body)
        except OSError:
            self.close_connection = True

    def _handle(self) -> None:
        health = self.core.config.health_path
        if health is not None and self.path.split("?", 1)[0] == health \
                and self.command in ("GET", "HEAD"):
            self._answer_health()
            return
        ex = Exchange(
            self.core, method=self.command, path=self.path, version=self.request_version,
            request_line=self.requestline, headers=self.headers,
            client_ip=self.client_address[0], connection=self.connection, rfile=self.rfile,
            wfile=self.wfile, keep_alive=not self.close_connection,
        )
        if self.core.trusted_proxies is not None:  # the client behind a trusted proxy
            ex.client_address = self.core.trusted_proxies.client_of(ex.client_ip, self.headers)
        try:
            forward(ex)
        except Reject as rej:
            self._answer_rejected(ex, rej)
        except ClientGone as err:
            ex.failure = err
            ex.error, ex.abort_kind = "ClientGone", "client_gone"
            log.debug("client %s went away [%s]: %s", ex.client_ip, ex.request_id, err)
            ex.close_connection = True
        except Aborted as err:
            ex.failure = err
            ex.error, ex.abort_kind = "Aborted", err.kind
            try:
                ex.writer.flush()  # what arrived goes out; the close then marks it short
            except ClientGone:
                pass
            log.warning("aborted response to %s %s [%s]: %s", ex.method, ex.path[:200],
                        ex.request_id, err)
            ex.close_connection = True
        except CrankError as err:
            ex.failure = err
            ex.failed(err)
            self._reject(ex, err)
        finally:
            if self.core.draining:
                ex.close_connection = True
            self.close_connection = ex.close_connection
            ex.complete()

    # -- errors ------------------------------------------------------------------------------

    def _answer_rejected(self, ex: Exchange, rej: Reject) -> None:
        """A listener answered the request itself; nothing (more) of it reaches a connector."""
        ex.rejected, ex.status = True, rej.status
        log.info("listener rejected %s %r from %s with %d [%s]", ex.method, ex.path[:200],
                 ex.client_address, rej.status, ex.request_id)
        if ex.body_pending:
            ex.close_connection = True
        data = rejection_response(rej, ex.request_id, ex.close_connection,
                                  head=ex.method == "HEAD")
        try:
            ex.writer.write_raw(data)
        except (OSError, ClientGone):
            ex.close_connection = True

    def _reject(self, ex: Exchange, err: CrankError) -> None:
        status = err.status
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(level, "%d for %s %r from %s [%s]: %s", status, ex.method, ex.path[:200],
                ex.client_ip, ex.request_id, err)
        if ex.response_started:
            ex.close_connection = True
            return
        if status in (400, 414, 431) or ex.body_pending:
            ex.close_connection = True
        if not self._write_error(status, str(err), ex.request_id, ex.close_connection):
            ex.close_connection = True

    def _write_error(self, status: int, text: str, request_id: str | None, close: bool) -> bool:
        """Write an error response; False (and the connection closes) when it failed."""
        data = error_response(status, text, request_id, close, head=self.command == "HEAD")
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return False
        return True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s - " + format, self.client_address[0], *args)
