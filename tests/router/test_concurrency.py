"""Concurrency caps (crank_sync.router.concurrency.Slots): the cap, the bounded queue in
arrival order, the queue timeout, and routes that do not hold each other up. Threads are
named and joined; waits are on events with deadlines."""
from __future__ import annotations

import threading

from support import wait_for

from crank_sync.router.concurrency import CONCURRENCY, QUEUE_TIMEOUT, Slots

LONG = 30.0  # a wait that must end by a hand-over, never by its timeout


class Waiting:
    """``slots.acquire`` on a named thread; ``result`` once it returned."""

    def __init__(self, slots: Slots, route: str, limit: int, queue: int, timeout: float,
                 name: str) -> None:
        self.result: object = "pending"
        self.done = threading.Event()

        def run() -> None:
            self.result = slots.acquire(route, limit, queue, timeout)
            self.done.set()

        self.thread = threading.Thread(target=run, name=f"test-slots-{name}")
        self.thread.start()

    def join(self) -> object:
        assert self.done.wait(LONG)
        self.thread.join(LONG)
        return self.result


def test_up_to_the_cap_then_refused_without_a_queue() -> None:
    slots = Slots()
    assert slots.acquire("a", 2, 0, LONG) is None
    assert slots.acquire("a", 2, 0, LONG) is None
    assert slots.acquire("a", 2, 0, LONG) == CONCURRENCY
    assert slots.counts() == {"a": (2, 0)}
    slots.release("a")
    assert slots.acquire("a", 2, 0, LONG) is None


def test_a_freed_slot_goes_to_the_oldest_waiter() -> None:
    slots = Slots()
    assert slots.acquire("a", 1, 2, LONG) is None
    first = Waiting(slots, "a", 1, 2, LONG, "first")
    wait_for(lambda: slots.counts()["a"] == (1, 1), what="the first waiter queued")
    second = Waiting(slots, "a", 1, 2, LONG, "second")
    wait_for(lambda: slots.counts()["a"] == (1, 2), what="the second waiter queued")
    assert slots.acquire("a", 1, 2, LONG) == CONCURRENCY  # the queue is full
    assert slots.acquire("a", 5, 2, LONG) == CONCURRENCY  # a newcomer never jumps the queue
    slots.release("a")
    assert first.join() is None
    assert not second.done.is_set()
    assert slots.counts()["a"] == (1, 1)
    slots.release("a")
    assert second.join() is None
    slots.release("a")
    assert slots.counts() == {}  # an idle route is forgotten


def test_a_waiter_times_out() -> None:
    slots = Slots()
    assert slots.acquire("a", 1, 1, LONG) is None
    assert slots.acquire("a", 1, 1, 0.0) == QUEUE_TIMEOUT  # waits no time at all
    assert slots.counts() == {"a": (1, 0)}
    slots.release("a")
    assert slots.counts() == {}


def test_a_full_route_does_not_hold_up_another() -> None:
    slots = Slots()
    assert slots.acquire("busy", 1, 1, LONG) is None
    waiter = Waiting(slots, "busy", 1, 1, LONG, "busy")
    wait_for(lambda: slots.counts()["busy"] == (1, 1), what="a waiter on busy")
    assert slots.acquire("other", 1, 0, LONG) is None  # at once, while busy has a waiter
    slots.release("other")
    slots.release("busy")
    assert waiter.join() is None
    slots.release("busy")
    assert slots.counts() == {}


def test_releasing_an_unknown_route_is_harmless() -> None:
    slots = Slots()
    slots.release("never")
    assert slots.counts() == {}
