"""The router's end of a connector websocket: :class:`crank_sync.ws.connection.ServerConnection`
with the upgrade answer and the v1 hand-over of a response body.

Our own class, not simple-websocket's ``Server``: simple-websocket runs a reader thread of its
own per connection and its send neither locks nor loops over short writes; we read on the
accepting thread and lock every write.

* the upgrade response carries the negotiated subprotocol and extra headers
  (``CrankerProtocol: 1.0``), and no compression extension;
* a v1 response body goes straight to the client from the reader thread once the client's
  thread hands it over (:meth:`RouterWebSocket.hand_over`): no thread hand-off per chunk.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..ws.connection import ConnectionClosed, ServerConnection
from ..ws.handshake import server_response
from ..ws.tls import LockedSocket

log = logging.getLogger(__name__)

__all__ = ["ConnectionClosed", "LockedSocket", "RouterWebSocket"]


class RouterWebSocket(ServerConnection):
    """A connector's websocket as the router holds it."""

    log = log

    def __init__(
        self,
        environ: dict[str, Any],
        *,
        subprotocol: str | None,
        extra_headers: list[tuple[bytes, bytes]],
        ping_interval: float,
        max_message_size: int,
        buffer_limit: int,
        thread_name: str,
        on_closed: Callable[[RouterWebSocket], None] | None = None,
        on_message: Callable[[str | bytes], None] | None = None,
    ) -> None:
        sock: LockedSocket = environ["werkzeug.socket"]
        super().__init__(
            sock, name=thread_name, ping_interval=ping_interval,
            max_message_size=max_message_size, buffer_limit=buffer_limit,
            subprotocol=subprotocol, on_message=on_message,
            on_closed=on_closed,  # type: ignore[arg-type]
        )
        self._sink: Callable[[str | bytes], None] | None = None
        self._sink_flush: Callable[[], None] | None = None
        self._sink_lock = threading.Lock()
        #: What the sink raised (the client went away, the body overran its length); the
        #: client's ``ClientSink`` keeps the write's own state (its lock, last activity).
        self.sink_error: BaseException | None = None
        # The request head was parsed and checked by the registration handler: answer it.
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        if not key:
            self.connected = False
            return
        sock.send(server_response(key, subprotocol, extra_headers))

    def _deliver(self, msg: str | bytes) -> None:
        if self._on_message is not None:
            super()._deliver(msg)
            return
        with self._cond:  # hand_over() sets the sink under it (the condition's lock is an RLock)
            if self._sink is None:
                super()._deliver(msg)
                return
        self._to_sink(msg)

    def _after_read(self) -> None:
        if self._sink_flush is not None:
            self._to_sink(None)  # no more at hand: what the sink holds goes out

    # -- handing a response body to the reader thread ------------------------------------------

    def hand_over(self, sink: Callable[[str | bytes], None], flush: Callable[[], None]) -> None:
        """From now on the reader thread passes each message to ``sink`` (and calls ``flush``
        when it has no more at hand) instead of queueing it for :meth:`receive`. Messages
        already queued go to ``sink`` first, here, in order. ``sink`` must not block for
        longer than a socket timeout; what it raises ends up in :attr:`sink_error`."""
        with self._cond:
            while self.input_buffer:
                msg = self.input_buffer.popleft()
                self._buffered -= len(msg)
                sink(msg)
            flush()
            self._sink, self._sink_flush = sink, flush
            self._cond.notify_all()  # the reader may be waiting for room

    def detach(self) -> None:
        """Stop passing messages to the sink; returns once the reader is not inside it."""
        with self._sink_lock:
            self._sink = self._sink_flush = None

    def wait_done(self, timeout: float) -> bool:
        """Wait until the socket has finished or the sink failed; False after ``timeout``."""
        with self._cond:
            return bool(self._cond.wait_for(
                lambda: self._finished or self.sink_error is not None, timeout))

    def _to_sink(self, msg: str | bytes | None) -> None:
        """Pass ``msg`` to the sink; with None, flush it."""
        with self._sink_lock:
            sink, flush = self._sink, self._sink_flush
            if sink is None or flush is None or self.sink_error is not None:
                return
            try:
                if msg is None:
                    flush()
                else:
                    sink(msg)
            except Exception as err:  # noqa: BLE001 - handed to the client's thread
                self._sink_failed(err)

    def _sink_failed(self, err: BaseException) -> None:
        with self._cond:
            self.sink_error = err
            self._cond.notify_all()
