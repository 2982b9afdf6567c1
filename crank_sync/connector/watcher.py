"""Notices a router closing a v1 socket while its request waits on the target.

While the socket's own thread is blocked in urllib3 (waiting for the target's response head),
nobody reads the websocket. This one thread watches such sockets with a selector; when the
router closes one (the client went away), it cancels the target request at once.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

from ..errors import WebSocketError
from ..ws.frames import Opcode
from .websocket import ConnectorWebSocket

log = logging.getLogger(__name__)


class CancelWatcher:
    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._watched: set[int] = set()  # id() of sockets between watch() and unwatch()
        # epoll sees a socket registered while another thread waits in it; select and poll
        # only look at the sockets they were called with, so they need waking
        self._wake_on_watch = not isinstance(self._sel, getattr(selectors, "EpollSelector", ()))
        self._thread = threading.Thread(target=self._run, name="crank-connector-watcher",
                                        daemon=True)
        self._thread.start()

    def watch(self, ws: ConnectorWebSocket, on_close: Callable[[], None]) -> None:
        """Call ``on_close`` when the router closes ``ws``; nothing when it is watched already
        (with the same callback: a v1 request keeps one watch from its head to its end)."""
        with self._lock:
            if id(ws) in self._watched:
                return
            self._watched.add(id(ws))
            self._register(ws, on_close)
        if self._wake_on_watch:
            self._wake()

    def _register(self, ws: ConnectorWebSocket, on_close: Callable[[], None]) -> None:
        if self._stopping or ws.sock is None or id(ws) not in self._watched:
            return
        try:
            self._sel.register(ws.sock, selectors.EVENT_READ, (ws, on_close))
        except (KeyError, ValueError, OSError):
            return

    def unwatch(self, ws: ConnectorWebSocket) -> None:
        """Stop watching ``ws``; call before its owner reads it again or closes it."""
        with self._lock:
            if id(ws) not in self._watched:
                return  # never registered, or unwatched already
            self._watched.discard(id(ws))
            self._unregister(ws)

    def _unregister(self, ws: ConnectorWebSocket) -> None:
        if ws.sock is not None:
            try:
                self._sel.unregister(ws.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stopping:
            try:
                events = self._sel.select(1.0)
            except OSError:
                continue
            for key, _ in events:
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                ws, on_close = key.data
                with self._lock:
                    self._unregister(ws)
                self._check(ws, on_close)

    def _check(self, ws: ConnectorWebSocket, on_close: Callable[[], None]) -> None:
        try:
            opcode, _data = ws.recv_frame()
        except WebSocketError:
            opcode = Opcode.CLOSE
        if opcode == Opcode.CLOSE:
            try:
                on_close()
            except Exception:  # noqa: BLE001 - keep watching the others
                log.exception("cancel callback failed")
        else:
            with self._lock:
                self._register(ws, on_close)  # a ping or pong: keep watching

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        self._thread.join(5.0)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
