"""The Connector: keeps a sliding window of idle sockets registered at each router."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from ..config import ConnectorConfig, redact_url
from ..plugin_loader import load_plugins
from ..threads import ThreadCache
from ..ws import masking
from .link import QUIET_ATTEMPTS, RouterLink
from .listening import ConnectorHooks
from .routers import RouterAddress, RouterSource
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
        #: Guards ``_links``: the router refresher adds and retires links while others read.
        self._links_lock = threading.Lock()
        self._source = RouterSource(config)
        self._refresher: threading.Thread | None = None
        self._stopping = threading.Event()
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
        masking.preload()  # not later, in the middle of the traffic (see ws/masking.py)
        self._pool = ThreadPoolExecutor(max_workers=self.config.v3_workers,
                                        thread_name_prefix="crank-connector-stream")
        self._watcher = CancelWatcher()
        self._threads = ThreadCache("crank-connector-socket")
        self._stopping.clear()
        for router in self._source.fixed():
            self._add(router)
        log.info("connector %s for route %r -> %s started, registering at %s",
                 self.config.connector_instance_id, self.config.route,
                 redact_url(self.config.target) if isinstance(self.config.target, str)
                 else self.config.target,
                 ", ".join([link.shown for link in self._current()] +
                           [redact_url(url) + " (DNS)" for url in self.config.router_dns] +
                           (["router_source"] if self.config.router_source else [])))
        if self._source.live:
            self._refresher = threading.Thread(target=self._refresh_loop, daemon=True,
                                               name="crank-connector-routers")
            self._refresher.start()
        return self

    # -- the set of routers ------------------------------------------------------------------

    def _current(self) -> list[RouterLink]:
        with self._links_lock:
            return list(self._links)

    def _add(self, router: RouterAddress) -> None:
        assert self._pool is not None and self._watcher is not None and self._threads
        link = RouterLink(self.config, router.url, self.target, self._pool, self._watcher,
                          self._threads, self.hooks, router.address)
        with self._links_lock:
            self._links.append(link)
        link.start()

    def _refresh_loop(self) -> None:
        """Look at the routers now and every ``router_refresh`` seconds until stop()."""
        while not self._stopping.is_set():
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("router refresh failed")
            self._stopping.wait(self.config.router_refresh)

    def refresh(self) -> None:
        """Follow the router set (router_dns, router_source): registrations are opened at
        routers that appeared, and those that went away are deregistered and drained."""
        wanted = self._source.current()
        if wanted is None or self._stopping.is_set():
            return
        have = {RouterAddress(link.url, link.address): link for link in self._current()
                if not link.stopping.is_set()}
        for router in wanted:
            if router not in have:
                log.info("router %s appeared: registering", router.shown)
                self._add(router)
        for router, link in have.items():
            if router not in wanted:
                log.info("router %s went away: deregistering", router.shown)
                link.begin_stop()
                assert self._threads is not None
                self._threads.submit(self._retire, link)

    def _retire(self, link: RouterLink) -> None:
        """Deregister from a router that left the set and drain its sockets (in-flight
        requests get up to ``idle_timeout``), then forget it."""
        deadline = time.monotonic() + self.config.idle_timeout
        self._drain(self._deregister(deadline, [link]), deadline, [link])
        for worker in link.workers():
            worker.force_close()
        for worker in link.workers():
            worker.done.wait(CLOSE_TIMEOUT + 1.0)
        with self._links_lock:
            if link in self._links:
                self._links.remove(link)
        log.info("deregistered from %s", link.shown)

    def status(self) -> list[dict[str, Any]]:
        """Each router's registration: ``router`` (as logs show it), ``url``, ``address``
        (when its name stands for several), ``state`` (connecting, registered, unreachable,
        refused, lost, deregistering), ``idle`` sockets and requests ``in_flight``."""
        return [{"router": link.shown, "url": redact_url(link.url), "address": link.address,
                 "state": link.state, "idle": link.idle_count(),
                 "in_flight": sum(w.inflight for w in link.workers())}
                for link in self._current()]

    def idle_count(self) -> int:
        """Idle sockets currently registered, across all routers."""
        return sum(link.idle_count() for link in self._current())

    def busy_count(self) -> int:
        """Requests in flight, v1 and v3."""
        return sum(w.inflight for link in self._current() for w in link.workers())

    def stop(self, timeout: float = 10.0) -> bool:
        """Deregister, wait for in-flight requests up to ``timeout``, close the rest and join
        every thread; True only when every request finished in time."""
        if not self._started:
            return True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._refresher is not None:
            self._refresher.join(max(0.1, deadline - time.monotonic()))
            self._refresher = None
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

    def _workers(self, links: list[RouterLink] | None = None) -> list[SocketWorker]:
        return [w for link in (self._current() if links is None else links)
                for w in link.workers()]

    def _deregister(self, deadline: float,
                    links: list[RouterLink] | None = None) -> list[RouterLink]:
        """Stop adding sockets and deregister at every router (or at ``links``): the links
        that did not confirm. Handshakes under way would register after the deregistration:
        they finish first."""
        links = self._current() if links is None else links
        for link in links:
            link.begin_stop()
        while (any(w.handshaking and not w.done.is_set() for w in self._workers(links))
               and time.monotonic() < deadline):
            time.sleep(0.01)
        return [
            link for link in links
            if not link.deregister(max(0.1, min(CLOSE_TIMEOUT, deadline - time.monotonic())))
        ]

    def _drain(self, unanswered: list[RouterLink], deadline: float,
               links: list[RouterLink] | None = None) -> None:
        """Until every socket has ended or the deadline: a router that confirmed
        deregistration closes our idle sockets itself; a socket it left open may be carrying
        a request that is on its way to us, so only those with nothing in flight are
        aborted."""
        while True:
            for link in unanswered:
                for worker in link.workers():
                    worker.abort()
            if not self._workers(links) or time.monotonic() >= deadline:
                return
            if links is not None and self._stopping.is_set():
                return  # a retiring router's drain: stop() takes it over
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
        ssl_context=client_context(config.target_ca_file, config.target_verify,
                                   prefix="target_")
        if config.target.startswith("https://") else None,
    )
