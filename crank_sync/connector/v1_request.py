"""Reading a v1 request after its head: the body's frames, and what follows a bodyless head.

Both read with a :class:`FrameReader` (what has arrived at once; websocket-client reads each
frame's head apart, 16 KiB at a time) and hand the socket back with nothing left in it, as
websocket-client (the cancel watcher, a tunnel) reads it from then on.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ..errors import WebSocketError
from ..protocol import MARKER_BODY_ENDED
from ..ws.frames import Opcode
from .frames import FrameReader
from .target import _Cancelled

# the lines of the v1 request they belong to: under the socket worker's logger, as before
log = logging.getLogger("crank_sync.connector.worker")


def closed_after_head(reader: FrameReader, label: str) -> bool:
    """A request without a body: True when ``reader`` holds the router's close behind its head
    (the client went away already; the close is answered)."""
    try:
        rest = reader.finish()
    except WebSocketError as err:
        log.info("router socket lost after the request head of %s: %r", label, err)
        return True
    if any(opcode == Opcode.CLOSE for opcode, _ in rest):
        log.info("request %s cancelled by the router", label)
        return True
    if rest:
        log.warning("router sent %d messages after the head of %s, which has no body; ignored",
                    len(rest), label)
    return False


def request_body(reader: FrameReader, then: Callable[[], None]) -> Iterator[bytes]:
    """The body's chunks up to the end marker; ``then()`` runs once the socket is handed back.
    A socket lost or closed by the router raises ``_Cancelled``."""
    while True:
        try:
            opcode, data = reader.recv()
        except WebSocketError as err:
            raise _Cancelled(f"router socket lost during request body: {err!r}") from err
        if opcode == Opcode.BINARY:
            if data:
                yield data
        elif opcode == Opcode.TEXT:
            if data.decode("utf-8", "replace").strip() == MARKER_BODY_ENDED:
                break
        elif opcode == Opcode.CLOSE:
            raise _Cancelled("router closed the socket during the request body")
    try:
        rest = reader.finish()
    except WebSocketError as err:
        raise _Cancelled(f"router socket lost after the request body: {err!r}") from err
    if any(opcode == Opcode.CLOSE for opcode, _ in rest):
        raise _Cancelled("router closed the socket after the request body")
    then()
