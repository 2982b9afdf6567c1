"""Running the router's proxy listeners (:class:`crank_sync.hooks.ProxyListener`).

:class:`RouterHooks` keeps, for each callback, only the listeners that override it, so a
no-op listener costs as little as none, and no listener costs one falsy check per hook point.
Each call goes through :meth:`RouterHooks.call`: a :class:`~crank_sync.hooks.Reject` passes
(where the callback may reject), anything else is logged with its traceback and becomes
:class:`~crank_sync.errors.ListenerFailed`, a 500 for that request only.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ListenerFailed
from ..hooks import ProxyListener, Reject

log = logging.getLogger(__name__)

#: The callbacks, in the order a request meets them; the first three may reject.
CALLBACKS = (
    "on_before_proxy_to_target",
    "on_after_target_headers_received",
    "on_before_responding_to_client",
    "on_failure_to_acquire_socket",
    "on_request_body_chunk",
    "on_response_body_chunk",
    "on_complete",
)
_MAY_REJECT = frozenset(CALLBACKS[:3])


def _overrides(listener: object, name: str) -> bool:
    """Does ``listener`` do something in ``name``? (A duck-typed listener counts when it has
    the method at all.)"""
    method = getattr(type(listener), name, None)
    return method is not None and method is not getattr(ProxyListener, name)


class RouterHooks:
    """The listeners of one router, sorted by callback."""

    def __init__(self, listeners: Iterable[object]) -> None:
        self.listeners = tuple(listeners)
        for listener in self.listeners:
            if not any(hasattr(listener, name) for name in CALLBACKS):
                raise TypeError(f"{listener!r} is not a proxy listener: it has none of the "
                                f"callbacks of crank_sync.ProxyListener")
        self.by_callback: dict[str, tuple[Callable[..., Any], ...]] = {
            name: tuple(getattr(listener, name) for listener in self.listeners
                        if _overrides(listener, name))
            for name in CALLBACKS
        }
        #: Any listener at all: an exchange builds its ProxyInfo only then.
        self.active = any(self.by_callback.values())
        self.before_proxy = self.by_callback["on_before_proxy_to_target"]
        self.after_target_headers = self.by_callback["on_after_target_headers_received"]
        self.before_responding = self.by_callback["on_before_responding_to_client"]
        self.failure_to_acquire = self.by_callback["on_failure_to_acquire_socket"]
        self.request_chunk = self.by_callback["on_request_body_chunk"]
        self.response_chunk = self.by_callback["on_response_body_chunk"]
        self.complete = self.by_callback["on_complete"]

    def call(self, name: str, callbacks: tuple[Callable[..., Any], ...], request_id: str,
             *args: Any) -> list[Any]:
        """Call each of ``callbacks`` with ``args``; their results, in order."""
        results = []
        for callback in callbacks:
            try:
                results.append(callback(*args))
            except Reject:
                if name in _MAY_REJECT:
                    raise
                log.error("listener %s raised Reject in %s, which cannot reject [%s]",
                          _owner(callback), name, request_id)
                raise ListenerFailed(f"a listener failed (request id {request_id})") from None
            except Exception as err:  # noqa: BLE001 - one listener's bug fails one request
                log.exception("listener %s failed in %s [%s]", _owner(callback), name,
                              request_id)
                raise ListenerFailed(f"a listener failed (request id {request_id})") from err
        return results

    def call_quietly(self, name: str, callbacks: tuple[Callable[..., Any], ...],
                     request_id: str, *args: Any) -> None:
        """As :meth:`call`, for a callback whose failure can change nothing (on_complete):
        each listener runs whatever the others did; failures are logged only."""
        for callback in callbacks:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 - logged with its traceback
                log.exception("listener %s failed in %s [%s]", _owner(callback), name,
                              request_id)


def _owner(callback: Callable[..., Any]) -> str:
    owner = getattr(callback, "__self__", callback)
    return type(owner).__qualname__
