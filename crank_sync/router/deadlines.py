"""Deadlines that shut a connection down when they pass (slow request heads, TLS handshakes).

Socket timeouts bound each read, not a whole request head: a client trickling one byte at a
time would hold its worker thread forever. One thread shuts down connections whose deadline
passed; the blocked read then fails at once.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import socket
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class Deadlines:
    def __init__(self, name: str = "crank-router-deadlines") -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._active: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, sock: Any, seconds: float, what: str) -> int:
        """Shut ``sock`` down in ``seconds`` unless :meth:`cancel` is called first."""
        key = next(self._ids)
        when = time.monotonic() + seconds
        with self._cond:
            self._active[key] = what
            earliest = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, key, sock))
            if earliest:  # otherwise the thread already wakes up before this one is due
                self._cond.notify()
        return key

    def cancel(self, key: int) -> None:
        with self._cond:
            self._active.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                # cancelled entries stay until due: popping them early would empty the heap and
                # make every add() wake this thread
                while self._heap and self._heap[0][0] <= now:
                    _, key, sock = heapq.heappop(self._heap)
                    what = self._active.pop(key, None)
                    if what is not None:
                        log.info("%s: deadline passed, closing the connection", what)
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(5.0)
