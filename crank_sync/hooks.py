"""Hooks: listeners that see, change or refuse every request, on the router and the connector.

A router takes ``listeners=[...]`` of :class:`ProxyListener`; a connector takes
``listeners=[...]`` of :class:`ConnectorListener`. Every method of both does nothing by
default, so a listener overrides only what it needs. Listeners run in the order given, on the
thread that serves the request (the response-body callbacks may run on a socket's reader
thread). A listener raises :class:`Reject` to answer the client itself; anything else it raises
gets that request a 500 (the router) or a 502 (the connector) and a log line with the
traceback, and the other requests go on. No listener: no cost.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class Headers:
    """An ordered, case-insensitive multi-map of header lines a listener may change.

    ``headers["X"] = v`` replaces every ``X`` line; :meth:`add` appends one; ``del`` removes
    all; iterating yields ``(name, value)`` pairs in order.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(str(n), str(v)) for n, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for n, v in self._items:
            if n.lower() == low:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for n, v in self._items if n.lower() == low]

    def add(self, name: str, value: str) -> None:
        self._items.append((_checked(name), _checked(value)))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.pop(name)
        self.add(name, value)

    def __delitem__(self, name: str) -> None:
        if not self.pop(name):
            raise KeyError(name)

    def pop(self, name: str) -> list[str]:
        """Remove every ``name`` line; their values (none: an empty list)."""
        low = name.lower()
        gone = [v for n, v in self._items if n.lower() == low]
        if gone:
            self._items = [(n, v) for n, v in self._items if n.lower() != low]
        return gone

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _checked(text: str) -> str:
    text = str(text)
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError(f"header text may not hold CR, LF or NUL: {text[:60]!r}")
    return text


class Reject(Exception):  # noqa: N818 - a verb: listeners `raise Reject(401)`
    """Raised by a listener to answer the client itself: ``status``, a ``body`` (text is sent
    as UTF-8 ``text/plain``) and extra ``headers``. Before the request reaches a connector, it
    never does; after the connector answered, its response is dropped."""

    def __init__(self, status: int, body: str | bytes = b"",
                 headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        if not 200 <= int(status) <= 599:
            raise ValueError(f"Reject status must be 200-599, got {status}")
        self.status = int(status)
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        self.headers = [(_checked(n), _checked(v)) for n, v in pairs]
        super().__init__(f"{self.status} {self.body[:80]!r}")


class ProxyInfo:
    """What the router knows of one request so far; listeners read it (and, in
    :meth:`ProxyListener.on_before_responding_to_client`, change ``status`` and
    ``response_headers``). Times are seconds."""

    __slots__ = ("_ex", "response_headers", "_status")

    def __init__(self, exchange: Any) -> None:
        self._ex = exchange
        #: The response headers to the client, once the connector's head arrived.
        self.response_headers: Headers | None = None
        self._status: int | None = None

    # who
    @property
    def route(self) -> str:
        return str(self._ex.route)

    @property
    def connector_instance_id(self) -> str:
        return str(self._ex.connector)

    @property
    def component_name(self) -> str:
        return str(self._ex.component)

    @property
    def service_address(self) -> tuple[str, int] | None:
        """The connector's address as the router sees its socket (None before one is chosen)."""
        return self._ex.service_address  # type: ignore[no-any-return]

    @property
    def protocol(self) -> str:
        """The connector socket's protocol: ``cranker_1.0``, ``cranker_3.0``, ``-`` before."""
        return str(self._ex.protocol)

    # what
    @property
    def method(self) -> str:
        return str(self._ex.method)

    @property
    def target(self) -> str:
        """The request target as the client sent it (path and query)."""
        return str(self._ex.path)

    @property
    def request_headers(self) -> Headers:
        """The client's request headers (a copy)."""
        return Headers(self._ex.headers.items())

    @property
    def client_address(self) -> str:
        """The client's address: the socket's, or the forwarded one from a trusted proxy."""
        return str(self._ex.client_address)

    @property
    def request_id(self) -> str:
        return str(self._ex.request_id)

    # how it goes
    @property
    def status(self) -> int | None:
        """The response status, once known."""
        if self._status is not None:
            return self._status
        return self._ex.status or None

    @status.setter
    def status(self, value: int) -> None:
        if not 200 <= int(value) <= 599:
            raise ValueError(f"status must be 200-599, got {value}")
        self._status = int(value)

    @property
    def bytes_in(self) -> int:
        """Request body bytes read from the client so far."""
        return int(self._ex.bytes_in)

    @property
    def bytes_out(self) -> int:
        """Response body bytes written to the client so far."""
        return int(self._ex.writer.bytes_written)

    @property
    def socket_wait(self) -> float:
        """How long the request waited for a connector socket."""
        return float(self._ex.socket_wait)

    @property
    def duration(self) -> float:
        """Time since the request head was read."""
        return float(self._ex.elapsed())

    @property
    def error(self) -> BaseException | None:
        """What ended the request, if it failed (set by :meth:`on_complete` time)."""
        return self._ex.failure  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (f"ProxyInfo({self.method} {self.target[:80]!r} route={self.route} "
                f"status={self.status} request_id={self.request_id})")


class ProxyListener:
    """A router hook; override what you need. See the module docstring for the rules."""

    def on_before_proxy_to_target(self, info: ProxyInfo, headers: Headers) -> None:
        """Before a connector is chosen: change ``headers`` (sent to the target) or raise
        :class:`Reject`."""

    def on_failure_to_acquire_socket(self, info: ProxyInfo) -> None:
        """No connector for the route, or no idle socket in time (the client gets 503)."""

    def on_after_target_headers_received(self, info: ProxyInfo, status: int,
                                         headers: Headers) -> int | None:
        """The connector's response head: change ``headers``, return a new status (or
        None to keep it), or raise :class:`Reject`."""
        return None

    def on_before_responding_to_client(self, info: ProxyInfo) -> None:
        """Just before the response head goes out: ``info.status`` and
        ``info.response_headers`` may still change; :class:`Reject` answers instead."""

    def on_request_body_chunk(self, info: ProxyInfo, chunk: bytes) -> None:
        """A piece of the request body was read from the client (observe only)."""

    def on_response_body_chunk(self, info: ProxyInfo, chunk: bytes) -> None:
        """A piece of the response body goes to the client (observe only; may run on a
        socket's reader thread)."""

    def on_complete(self, info: ProxyInfo) -> None:
        """The request is over, success or not (``info.error``); called exactly once."""


class RegistrationState(str, enum.Enum):
    """What became of a connector's registration at one router; compares equal to, and prints
    as, its value (``"registered"``, ``"lost"``, ``"refused"``)."""

    REGISTERED = "registered"
    LOST = "lost"
    REFUSED = "refused"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RequestInfo:
    """What the connector knows of one request it replays (``status`` once the target
    answered, ``error`` if it failed)."""

    __slots__ = ("router", "route", "method", "target", "request_id", "protocol", "status",
                 "bytes_in", "bytes_out", "error", "started", "extra")

    def __init__(self, *, router: str, route: str, method: str, target: str,
                 request_id: str, protocol: str, started: float) -> None:
        self.router, self.route, self.protocol = router, route, protocol
        self.method, self.target, self.request_id = method, target, request_id
        self.status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.error: BaseException | None = None
        self.started = started
        #: Free for listeners to keep per-request state in.
        self.extra: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (f"RequestInfo({self.method} {self.target[:80]!r} status={self.status} "
                f"request_id={self.request_id})")


class ConnectorListener:
    """A connector hook; override what you need. See the module docstring for the rules."""

    def on_before_request(self, info: RequestInfo, headers: Headers) -> None:
        """Before the target sees the request: change ``headers`` or raise :class:`Reject`
        (the router's client gets that response; the target sees nothing)."""

    def on_response(self, info: RequestInfo, status: int, headers: Headers) -> None:
        """The target's response head, before it goes back to the router."""

    def on_complete(self, info: RequestInfo) -> None:
        """The request is over, success or not (``info.error``); called exactly once."""

    def on_registration_changed(self, router: str, state: RegistrationState,
                                reason: str = "") -> None:
        """A registration at ``router`` (its URL) became ``state``; ``reason`` says why
        when it was lost or refused."""

    def registration_headers(self, router: str) -> Mapping[str, str]:
        """Extra headers for the next registration at ``router`` (e.g. a fresh token)."""
        return {}
