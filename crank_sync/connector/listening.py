"""Running the connector's listeners (:class:`crank_sync.hooks.ConnectorListener`).

:class:`ConnectorHooks` keeps, for each callback, only the listeners that override it: with
none for a request's callbacks, a request costs one falsy check and no
:class:`~crank_sync.hooks.RequestInfo` is made. With some, :func:`.hooked.send` takes the
target's ``send`` place: the socket workers read what it returns as a target's response, so
the v1 and v3 paths stay as they were.

A listener's :class:`~crank_sync.hooks.Reject` passes where the callback may reject; anything
else it raises is logged with its traceback and becomes
:class:`~crank_sync.errors.ListenerFailed` (a 502 for that request, see :mod:`.hooked`), but
in ``on_complete`` and ``on_registration_changed`` it is logged only.

Registration changes are reported per router (:class:`RegistrationNotices`): the link decides
a change under its own lock and queues it; the queue is emptied in order, one call at a time,
outside that lock.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..config import redact_url
from ..errors import ListenerFailed
from ..hooks import ConnectorListener, RegistrationState, Reject

log = logging.getLogger(__name__)

#: The callbacks, in the order a request meets them, then the registration's.
CALLBACKS = ("on_before_request", "on_response", "on_complete", "on_registration_changed",
             "registration_headers")
_MAY_REJECT = frozenset(CALLBACKS[:2])

#: Upgrade headers that are the websocket handshake's own (or the protocol offer the
#: connector reads the answer of): a listener may not set them.
RESERVED_HEADERS = frozenset({"host", "upgrade", "connection", "origin", "sec-websocket-key",
                              "sec-websocket-version", "sec-websocket-protocol"})
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")


def _overrides(listener: object, name: str) -> bool:
    """Does ``listener`` do something in ``name``? (A duck-typed listener counts when it has
    the method at all.)"""
    method = getattr(type(listener), name, None)
    return method is not None and method is not getattr(ConnectorListener, name)


def owner(callback: Callable[..., Any]) -> str:
    """The listener's class name, for log lines."""
    return type(getattr(callback, "__self__", callback)).__qualname__


class ConnectorHooks:
    """The listeners of one connector, sorted by callback."""

    def __init__(self, listeners: Iterable[object]) -> None:
        self.listeners = tuple(listeners)
        for listener in self.listeners:
            if not any(hasattr(listener, name) for name in CALLBACKS):
                raise TypeError(f"{listener!r} is not a connector listener: it has none of the "
                                f"callbacks of crank_sync.ConnectorListener")
        by_callback = {name: tuple(getattr(listener, name) for listener in self.listeners
                                   if _overrides(listener, name))
                       for name in CALLBACKS}
        self.before_request = by_callback["on_before_request"]
        self.response = by_callback["on_response"]
        self.complete = by_callback["on_complete"]
        self.registration_changed = by_callback["on_registration_changed"]
        self.registration_headers = by_callback["registration_headers"]
        #: A request callback at all: only then is a RequestInfo made for each request.
        self.per_request = bool(self.before_request or self.response or self.complete)

    def call(self, name: str, callbacks: tuple[Callable[..., Any], ...], request_id: str,
             *args: Any) -> None:
        """Call each of ``callbacks`` with ``args``, in order."""
        for callback in callbacks:
            try:
                callback(*args)
            except Reject:
                if name in _MAY_REJECT:
                    raise
                log.error("connector listener %s raised Reject in %s, which cannot reject "
                          "[%s]", owner(callback), name, request_id)
                raise ListenerFailed(f"a connector listener failed (request id {request_id})"
                                     ) from None
            except Exception as err:  # noqa: BLE001 - one listener's bug fails one request
                log.exception("connector listener %s failed in %s [%s]", owner(callback), name,
                              request_id)
                raise ListenerFailed(f"a connector listener failed (request id {request_id})"
                                     ) from err

    def call_quietly(self, name: str, callbacks: tuple[Callable[..., Any], ...], label: str,
                     *args: Any) -> None:
        """As :meth:`call`, for a callback whose failure can change nothing: every listener
        runs whatever the others did; failures are logged only."""
        for callback in callbacks:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 - logged with its traceback
                log.exception("connector listener %s failed in %s [%s]", owner(callback), name,
                              label)

    # -- registration ------------------------------------------------------------------------

    def upgrade_headers(self, router: str, base: list[str]) -> list[str]:
        """``base`` (``Name: value`` lines) with every listener's ``registration_headers``
        merged in: a name a listener gives replaces ours; the websocket handshake's own names
        are refused. ListenerFailed (logged) when a listener fails or gives one of those."""
        extra: list[tuple[str, str]] = []
        for callback in self.registration_headers:
            try:
                extra.extend(_checked_pairs(callback(router)))
            except Exception as err:  # noqa: BLE001 - that registration attempt fails
                log.exception("connector listener %s failed in registration_headers [%s]",
                              owner(callback), redact_url(router))
                raise ListenerFailed(f"registration_headers of {owner(callback)} failed: "
                                     f"{err}") from err
        if not extra:
            return base
        names = {name.lower() for name, _ in extra}
        kept = [line for line in base if line.partition(":")[0].strip().lower() not in names]
        return kept + [f"{name}: {value}" for name, value in extra]


def _checked_pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None
                   ) -> list[tuple[str, str]]:
    """A listener's registration headers as pairs, or ValueError for one we cannot send."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    out = []
    for name, value in pairs:
        name, value = str(name), str(value)
        if not _TOKEN_RE.match(name) or _BAD_VALUE_RE.search(value):
            raise ValueError(f"not a header: {name[:60]!r}: {value[:60]!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{name} is the websocket handshake's own header")
        out.append((name, value))
    return out


class RegistrationNotices:
    """The registration state last reported for one router, and the changes still to report.

    :meth:`change` is called under the link's lock, where the change is decided; :meth:`deliver`
    after it, without that lock: calls for one router come in the order the changes were
    decided and never overlap. Each call is a change: the same state never comes twice in a
    row.
    """

    def __init__(self, hooks: ConnectorHooks, router: str) -> None:
        self._callbacks = hooks.registration_changed
        self._hooks = hooks
        self.router = router
        self.state: RegistrationState | None = None
        self._queue: collections.deque[tuple[RegistrationState, str]] = collections.deque()
        self._lock = threading.Lock()  # the queue and state; innermost
        self._delivering = threading.Lock()  # held while listeners are called

    def change(self, state: RegistrationState, reason: str = "") -> None:
        if not self._callbacks:
            return
        with self._lock:
            if state is not self.state:
                self.state = state
                self._queue.append((state, reason))

    def deliver(self) -> None:
        if not self._callbacks:
            return
        with self._delivering:
            while True:
                with self._lock:
                    if not self._queue:
                        return
                    state, reason = self._queue.popleft()
                self._hooks.call_quietly("on_registration_changed", self._callbacks,
                                         redact_url(self.router), self.router, state, reason)
