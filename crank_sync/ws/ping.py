"""Keeping a websocket alive: the one rule both sides apply to a quiet peer."""
from __future__ import annotations

__all__ = ["silent_too_long"]


def silent_too_long(last_heard: float, interval: float, now: float) -> bool:
    """True once the peer has been silent for twice the ping interval (monotonic
    times): a ping went unanswered for a whole interval, so the socket is given up."""
    return now - last_heard >= 2 * interval
