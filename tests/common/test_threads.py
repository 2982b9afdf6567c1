"""ThreadCache: jobs run on parked threads when there are any, on new threads otherwise."""
from __future__ import annotations

import threading
import time

import pytest
from support import wait_for

from crank_sync.threads import ThreadCache


def _run_and_name(cache: ThreadCache) -> str:
    """Submit one job and return the name of the thread that ran it."""
    ran = threading.Event()
    names: list[str] = []

    def job() -> None:
        names.append(threading.current_thread().name)
        ran.set()

    cache.submit(job)
    assert ran.wait(10), "job did not run"
    return names[0]


def test_a_finished_thread_runs_the_next_job():
    cache = ThreadCache("crank-test-cache")
    try:
        first = _run_and_name(cache)
        wait_for(lambda: cache.idle == 1, what="the thread parked")
        names = {_run_and_name(cache) for _ in range(20)}
        assert names == {first}
        assert len(cache.threads()) == 1
    finally:
        assert cache.stop(time.monotonic() + 10)


def test_busy_threads_are_not_shared():
    cache = ThreadCache("crank-test-cache")
    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def blocker() -> None:
        with lock:
            started.append(threading.current_thread().name)
        release.wait(10)

    try:
        for _ in range(5):
            cache.submit(blocker)
        wait_for(lambda: len(started) == 5, what="five blocking jobs running")
        assert len(set(started)) == 5
        assert all(name.startswith("crank-test-cache-") for name in started)
    finally:
        release.set()
        assert cache.stop(time.monotonic() + 10)


def test_parked_threads_end_after_the_idle_timeout():
    cache = ThreadCache("crank-test-cache", idle_timeout=0.05)
    try:
        _run_and_name(cache)
        wait_for(lambda: not cache.threads(), what="the idle thread ended")
        assert cache.idle == 0
        _run_and_name(cache)  # a new thread serves the next job
    finally:
        assert cache.stop(time.monotonic() + 10)


def test_at_most_max_idle_threads_park():
    cache = ThreadCache("crank-test-cache", max_idle=2)
    release = threading.Event()
    running = threading.Semaphore(0)

    def blocker() -> None:
        running.release()
        release.wait(10)

    try:
        for _ in range(5):
            cache.submit(blocker)
        for _ in range(5):
            assert running.acquire(timeout=10)
        release.set()
        wait_for(lambda: len(cache.threads()) == 2, what="three threads ended, two parked")
        assert cache.idle == 2
    finally:
        release.set()
        assert cache.stop(time.monotonic() + 10)


def test_a_failing_job_is_logged_and_the_thread_lives_on(caplog):
    cache = ThreadCache("crank-test-cache")

    def boom() -> None:
        raise ValueError("job exploded")

    try:
        first = _run_and_name(cache)
        wait_for(lambda: cache.idle == 1, what="the thread parked")
        cache.submit(boom)
        wait_for(lambda: "job exploded" in caplog.text, what="the failure logged")
        wait_for(lambda: cache.idle == 1, what="the thread parked again")
        assert _run_and_name(cache) == first
    finally:
        assert cache.stop(time.monotonic() + 10)


def test_stop_ends_parked_threads_joins_busy_ones_and_refuses_new_jobs():
    cache = ThreadCache("crank-test-cache")
    release = threading.Event()
    started = threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(10)

    _run_and_name(cache)
    wait_for(lambda: cache.idle == 1, what="the thread parked")
    cache.submit(blocker)  # runs on the parked thread
    assert started.wait(10)
    _run_and_name(cache)  # a second thread, which parks
    wait_for(lambda: cache.idle == 1, what="the second thread parked")
    threads = cache.threads()
    assert len(threads) == 2
    assert not cache.stop(time.monotonic() + 0.1), "a busy thread was still running"
    release.set()
    assert cache.stop(time.monotonic() + 10)
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(RuntimeError):
        cache.submit(lambda: None)
