"""Worker threads that are reused: a finished thread parks for the next job instead of ending.

Starting a thread costs a ``clone``, a stack mapping and a hand-shake with the starting thread
(``Thread.start`` waits until the new thread runs). A router serving one connection per
request (Cranker v1 sockets, clients without keep-alive) paid that on every request. Here a
job goes to the most recently parked thread when there is one, and to a new thread otherwise;
a parked thread ends after ``idle_timeout`` seconds without work, and at most ``max_idle``
threads park at once. There is no upper bound on busy threads: each job may block for as long
as its connection lives, so a bound would turn slow clients into refused ones.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_Job = tuple[Callable[..., Any], tuple[Any, ...]]
_STOP = None


class _Worker:
    __slots__ = ("jobs", "thread")

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None


class ThreadCache:
    """Runs each submitted job on a thread named ``{prefix}-{n}``, reusing idle threads."""

    def __init__(self, prefix: str, *, idle_timeout: float = 30.0, max_idle: int = 32) -> None:
        self.prefix = prefix
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the most recently parked thread is reused
        self._threads: set[threading.Thread] = set()
        self._stopped = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a parked thread, or on a new one; RuntimeError once stopped."""
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"{self.prefix} threads are stopped")
            if self._idle:
                self._idle.pop().jobs.put((fn, args))
                return
            worker = _Worker()
            thread = threading.Thread(target=self._run, args=(worker, (fn, args)),
                                      name=f"{self.prefix}-{next(self._ids)}", daemon=True)
            worker.thread = thread
            self._threads.add(thread)
        thread.start()

    def _run(self, worker: _Worker, job: _Job | None) -> None:
        try:
            while job is not None:
                fn, args = job
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - one job's failure must not end the thread
                    log.exception("%s: job failed", threading.current_thread().name)
                job = fn = args = None  # type: ignore[assignment]  # drop references while parked
                job = self._park(worker)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _park(self, worker: _Worker) -> _Job | None:
        """Wait for the next job; None when the thread should end."""
        with self._lock:
            if self._stopped or len(self._idle) >= self.max_idle:
                return None
            self._idle.append(worker)
        try:
            return worker.jobs.get(timeout=self.idle_timeout)
        except queue.Empty:
            pass
        with self._lock:
            try:
                self._idle.remove(worker)
                return None
            except ValueError:
                pass  # submit() took this worker just as the wait ended: its job is queued
        return worker.jobs.get(timeout=self.idle_timeout)

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def stop(self, deadline: float) -> bool:
        """Refuse new jobs, end parked threads, join busy ones until ``deadline`` (monotonic).

        True when every thread ended in time.
        """
        with self._lock:
            self._stopped = True
            parked, self._idle = self._idle, []
            threads = list(self._threads)
        for worker in parked:
            worker.jobs.put(_STOP)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
