"""The Connector: keeps a sliding window of idle sockets registered at each router."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from ..config import ConnectorConfig, redact_url
from ..plugin_loader import load_plugins
from ..threads import ThreadCache
from .link import QUIET_ATTEMPTS, RouterLink
from .listening import ConnectorHooks
from .target import Target, TargetClient
from .tls import client_context
from .watcher import CancelWatcher
from .worker import CLOSE_TIMEOUT, SocketWorker

__all__ = ["QUIET_ATTEMPTS", "Connector"]

log = logging.getLogger(__name__)


class Connector:
    """A Cranker connector: exposes ``target`` at ``route`` on every router in ``routers``.

    Options come as a :class:`ConnectorConfig` or as its fields by keyword
    (``Connector(target=..., route=..., routers=[...])``), not both, as for ``Router``.
    ``start()`` creates the threads and returns at once; sockets connect in the background
    and reconnect with backoff.
    ``stop(timeout)`` deregisters, waits for in-flight requests, closes the rest, joins every
    thread, and returns True only when every request finished in time.

    ``listeners`` (also a ``ConnectorConfig`` field, and allowed beside a config as for
    ``Router``): :class:`~crank_sync.hooks.ConnectorListener` objects, called in that order,
    then the ones the config's ``plugins`` name, made here (:mod:`crank_sync.plugin_loader`;
    a bad one raises :class:`~crank_sync.errors.PluginError`).
    For each request, on the thread serving it (a v1 socket's, a v3 stream's):
    ``on_before_request(info, headers)`` before the target sees it (the target gets
    ``headers`` as changed; ``raise Reject(status, body, headers)`` answers instead, the
    target never sees the request, and the router's request body is read and dropped);
    ``on_response(info, status, headers)`` with the target's head (the router gets
    ``headers`` as changed; Reject replaces the response, not called for a Reject's own);
    ``on_complete(info)`` exactly once, when the response went back or the request failed
    (``info.error``), with ``info.status``, ``bytes_in``/``bytes_out`` (body bytes),
    ``router`` (its URL as configured), ``route``, ``protocol`` ("1.0"/"3.0") and
    ``request_id`` (the X-Request-Id).
    Anything else a listener raises answers that request with a 502 naming the request id,
    and logs the traceback (in ``on_complete``: logged only). Per router:
    ``registration_headers(router_url)`` is merged into every (de)registration upgrade (a
    failure fails that attempt); ``on_registration_changed(router_url, state, reason)`` on
    each change of the router's state: REGISTERED when a first socket registers (at the start,
    or after LOST or REFUSED), LOST when the last registered socket is lost, REFUSED when the
    router refuses an upgrade (an HTTP status, or TLS) while no socket of ours is registered
    there. The same state never comes twice in a row; nothing is reported on ``stop()``.
    """

    def __init__(self, config: ConnectorConfig | None = None, *,
                 listeners: Iterable[object] | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("Connector() takes a ConnectorConfig or keyword options, not both")
        if config is None:
            if listeners is not None:
                options["listeners"] = listeners
            config = ConnectorConfig(**options)
        elif listeners is not None:
            if config.listeners:
                raise TypeError("Connector() takes listeners in its config or as a keyword, "
                                "not both")
            config = dataclasses.replace(config, listeners=cast(Any, listeners))  # checked there
        self.config = config
        listeners = config.listeners
        if config.plugins:
            listeners = (*listeners, *load_plugins(config.plugins, "connector"))
        self.hooks = ConnectorHooks(listeners)
        self.target = _make_target(self.config)
        self._pool: ThreadPoolExecutor | None = None
        self._links: list[RouterLink] = []
        self._watcher: CancelWatcher | None = None
        self._threads: ThreadCache | None = None
        self._started = False

    @property
    def listeners(self) -> tuple[object, ...]:
        """The listeners, in the order they are called: those given, then the plugins'."""
        return self.hooks.listeners

    @property
    def connector_instance_id(self) -> str:
        return self.config.connector_instance_id

    def start(self) -> Connector:
        if self._started:
            raise RuntimeError("connector already started")
        self._started = True
        self._pool = ThreadPoolExecutor(max_workers=self.config.v3_workers,
                                        thread_name_prefix="crank-connector-stream")
        self._watcher = CancelWatcher()
        self._threads = ThreadCache("crank-connector-socket")
        self._links = [RouterLink(self.config, url, self.target, self._pool, self._watcher,
                                  self._threads, self.hooks)
                       for url in self.config.routers]
        for link in self._links:
            link.start()
        log.info("connector %s for route %r -> %s started, registering at %s",
                 self.config.connector_instance_id, self.config.route,
                 redact_url(self.config.target) if isinstance(self.config.target, str)
                 else self.config.target, ", ".join(link.shown for link in self._links))
        return self

    def idle_count(self) -> int:
        """Idle sockets currently registered, across all routers."""
        return sum(link.idle_count() for link in self._links)

    def busy_count(self) -> int:
        """Requests in flight, v1 and v3."""
        return sum(w.inflight for link in self._links for w in link.workers())

    def stop(self, timeout: float = 10.0) -> bool:
        """Deregister, wait for in-flight requests up to ``timeout``, close the rest and join
        every thread; True only when every request finished in time."""
        if not self._started:
            return True
        deadline = time.monotonic() + timeout
        unanswered = self._deregister(deadline)
        self._drain(unanswered, deadline)
        clean = self.busy_count() == 0
        if not clean:
            log.warning("connector stop: %d request(s) still in flight after %.1fs; closing",
                        self.busy_count(), timeout)
        clean = self._close_all() and clean
        self._started = False
        log.info("connector %s stopped (%s)", self.config.connector_instance_id,
                 "clean" if clean else "not clean")
        return clean

    def _workers(self) -> list[SocketWorker]:
        return [w for link in self._links for w in link.workers()]

    def _deregister(self, deadline: float) -> list[RouterLink]:
        """Stop adding sockets and deregister at every router: the links that did not
        confirm. Handshakes under way would register after the deregistration: they finish
        first."""
        for link in self._links:
            link.begin_stop()
        while (any(w.handshaking and not w.done.is_set() for w in self._workers())
               and time.monotonic() < deadline):
            time.sleep(0.01)
        return [
            link for link in self._links
            if not link.deregister(max(0.1, min(CLOSE_TIMEOUT, deadline - time.monotonic())))
        ]

    def _drain(self, unanswered: list[RouterLink], deadline: float) -> None:
        """Until every socket has ended or the deadline: a router that confirmed
        deregistration closes our idle sockets itself; a socket it left open may be carrying
        a request that is on its way to us, so only those with nothing in flight are
        aborted."""
        while True:
            for link in unanswered:
                for worker in link.workers():
                    worker.abort()
            if not self._workers() or time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def _close_all(self) -> bool:
        """Close every socket, join every thread, close the target: False if a thread is
        left running."""
        clean = True
        for worker in self._workers():
            worker.force_close()
        join_until = time.monotonic() + CLOSE_TIMEOUT + 1.0
        for worker in self._workers():
            worker.done.wait(max(0.0, join_until - time.monotonic()))
        leftover = [w.name for w in self._workers()]
        if leftover:
            log.error("connector stop: threads still running: %s", leftover)
            clean = False
        if self._threads is not None and not self._threads.stop(join_until):
            log.error("connector stop: socket threads did not end")
            clean = False
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._watcher is not None:
            self._watcher.stop()
        self.target.close()
        return clean

    def __enter__(self) -> Connector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_target(config: ConnectorConfig) -> Target:
    """The target ``config`` names: a WSGI app (a callable), a ready Target, or a URL."""
    if callable(config.target):
        from .wsgi import WsgiTarget

        return WsgiTarget(config.target)
    if not isinstance(config.target, str):
        return config.target  # type: ignore[no-any-return]  # e.g. WsgiTarget(app, script_name=...)
    return TargetClient(
        config.target,
        connect_timeout=config.connect_timeout,
        read_timeout=config.idle_timeout,
        maxsize=config.v3_workers,
        ssl_context=client_context(config.target_ca_file, config.target_verify)
        if config.target.startswith("https://") else None,
    )
