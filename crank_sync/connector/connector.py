"""The Connector: keeps a sliding window of idle sockets registered at each router."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import ConnectorConfig, redact_url
from ..errors import RegistrationRefused, TlsError, WebSocketError
from ..threads import ThreadCache
from ..ws.frames import Opcode
from .handshake import open_websocket, refusal_text
from .target import Target, TargetClient
from .tls import client_context
from .watcher import CancelWatcher
from .worker import CLOSE_TIMEOUT, SocketState, SocketWorker, endpoint, handshake_headers

log = logging.getLogger(__name__)

#: Failed registration attempts in a row logged at INFO before WARNING (a router restarting).
QUIET_ATTEMPTS = 3

#: Socket states counted towards a router's v3 sockets, v1 sliding window, registered sockets
#: and sockets ready for a request.
_V3_COMING = frozenset({SocketState.V3, SocketState.CONNECTING})
_V1_COMING = frozenset({SocketState.IDLE, SocketState.CONNECTING})
_REGISTERED = frozenset({SocketState.IDLE, SocketState.BUSY, SocketState.V3})
_READY = frozenset({SocketState.IDLE, SocketState.V3})


class RouterLink:
    """The sockets of one connector at one router."""

    def __init__(self, config: ConnectorConfig, url: str, target: Target,
                 pool: ThreadPoolExecutor, watcher: CancelWatcher, threads: ThreadCache) -> None:
        self.config = config
        self.url = url
        self.target = target
        self.pool = pool
        self.watcher = watcher
        #: Where socket workers run.
        self.threads = threads
        #: websocket-client's TLS options: our own context, never global settings
        self.sslopt: dict[str, object] = {}
        if url.startswith("wss://"):
            self.sslopt = {"context": client_context(config.ca_file, config.verify,
                                                     config.client_cert, config.client_key)}
        #: ``url`` as logs show it (no password)
        self.shown = redact_url(url)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._workers: set[SocketWorker] = set()
        self._attempts = 0
        #: registered here, and not lost since (each change is logged once)
        self._up = False
        self._ever_up = False

    def start(self) -> None:
        """Open one socket; once the router has said which protocol it speaks, the link tops up
        to ``sliding_window`` idle v1 sockets or ``v3_sockets`` v3 sockets."""
        self._spawn()

    def _spawn(self, count: int = 1) -> None:
        started = []
        with self._lock:
            if self.stopping.is_set():
                return
            for _ in range(count):
                worker = SocketWorker(self)
                self._workers.add(worker)
                started.append(worker)
        for worker in started:
            worker.start()

    def _wanted(self, version: str) -> int:
        """Sockets to add so that the router has as many as configured, for ``version``."""
        if version == "3.0":
            have = sum(1 for w in self._workers if w.state in _V3_COMING)
            return max(0, self.config.v3_sockets - have)
        have = sum(1 for w in self._workers if w.state in _V1_COMING)
        return max(0, self.config.sliding_window - have)

    # -- called by workers -------------------------------------------------------------------

    def on_request(self, worker: SocketWorker) -> None:
        """A request arrived on ``worker``: open its replacement at once."""
        self._spawn()

    def on_registered(self, worker: SocketWorker, version: str) -> None:
        """``worker`` registered with ``version``: open what the link lacks for it."""
        with self._lock:
            wanted = self._wanted(version)
            came_up, again, failures = not self._up, self._ever_up, self._attempts
            self._up = self._ever_up = True
            self._attempts = 0
        if came_up:
            log.info("registered at %s with cranker_%s for route %r%s", self.shown, version,
                     self.config.route,
                     f" again, after {failures} failed attempt(s)" if again else "")
        if wanted:
            self._spawn(wanted)

    def on_connect_failed(self, worker: SocketWorker, err: WebSocketError) -> float:
        """A registration attempt failed: log it (quietly for the first few, unless the
        router refused), and return how long to wait before the next."""
        delay = self.next_backoff()
        with self._lock:
            attempts = self._attempts
            lost = self._up and not self._registered(worker)
            if lost:
                self._up = False
        refused = isinstance(err, RegistrationRefused | TlsError)
        text = refusal_text(err) if isinstance(err, RegistrationRefused) else str(err) or repr(err)
        if lost:
            log.warning("lost registration at %s: %s", self.shown, text)
        level = logging.WARNING if refused or attempts > QUIET_ATTEMPTS else logging.INFO
        log.log(level, "cannot register at %s: %s; retrying in %.2fs (attempt %d)", self.shown,
                text, delay, attempts)
        return delay

    def on_socket_lost(self, worker: SocketWorker) -> None:
        """A registered socket closed while the connector was not stopping."""
        with self._lock:
            lost = self._up and not self._registered(worker)
            if lost:
                self._up = False
        if lost:
            log.warning("lost registration at %s: its last socket closed; reconnecting",
                        self.shown)

    def _registered(self, besides: SocketWorker) -> bool:
        """Another socket than ``besides`` is registered (under the lock)."""
        return any(w.state in _REGISTERED for w in self._workers if w is not besides)

    def wants_socket(self, worker: SocketWorker) -> bool:
        """False when enough v3 sockets are registered without ``worker``'s: it may end. (A v3
        router serves every request on them; more sockets only cost throughput.)"""
        with self._lock:
            v3 = sum(1 for w in self._workers if w.state is SocketState.V3 and w is not worker)
            return v3 < self.config.v3_sockets

    def begin_handshake(self, worker: SocketWorker) -> bool:
        """Mark ``worker`` as registering, unless stop() has begun: checked and set under the
        lock stop() takes, so stop() sees every handshake that may register."""
        with self._lock:
            if self.stopping.is_set():
                return False
            worker.handshaking = True
            return True

    def begin_stop(self) -> None:
        with self._lock:
            self.stopping.set()

    def on_exit(self, worker: SocketWorker) -> None:
        with self._lock:
            self._workers.discard(worker)

    def next_backoff(self) -> float:
        """0.5 s + min(10 s, 2^attempts ms), growing until a connection succeeds."""
        with self._lock:
            attempts = self._attempts
            self._attempts += 1
        return 0.5 + min(10.0, (2 ** min(attempts, 30)) / 1000.0)

    # -- inspection and stop -----------------------------------------------------------------

    def workers(self) -> list[SocketWorker]:
        with self._lock:
            return list(self._workers)

    def idle_count(self) -> int:
        """Registered sockets ready for a request: idle v1 sockets and every v3 socket."""
        return sum(1 for w in self.workers() if w.state in _READY)

    def deregister(self, timeout: float) -> bool:
        """Ask the router to drop our idle sockets; True once it said it is done.

        After that, every socket of ours the router has not closed carries a request, so
        stop() leaves them alone until they finish.
        """
        cfg = self.config
        url = endpoint(self.url, "deregister", cfg.connector_instance_id, cfg.component_name)
        try:
            ws = open_websocket(
                url, timeout=max(0.1, min(timeout, cfg.connect_timeout)),
                header=handshake_headers(cfg.route, cfg.protocols, cfg.domain, cfg.token),
                sslopt=self.sslopt,
            )
        except WebSocketError as err:
            log.info("deregistration at %s failed: %s", self.shown, err)
            return False
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ws.settimeout(max(0.05, deadline - time.monotonic()))
                opcode, _ = ws.recv_frame()
                if opcode == Opcode.CLOSE:
                    return True
        except WebSocketError as err:
            log.info("deregistration at %s got no answer: %r", self.shown, err)
        finally:
            ws.shutdown()
        return False


class Connector:
    """A Cranker connector: exposes ``target`` at ``route`` on every router in ``routers``.

    Options come as a :class:`ConnectorConfig` or as its fields by keyword
    (``Connector(target=..., route=..., routers=[...])``), not both, as for ``Router``.
    ``start()`` creates the threads and returns at once; sockets connect in the background
    and reconnect with backoff.
    ``stop(timeout)`` deregisters, waits for in-flight requests, closes the rest, joins every
    thread, and returns True only when every request finished in time.
    """

    def __init__(self, config: ConnectorConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("Connector() takes a ConnectorConfig or keyword options, not both")
        self.config = config if config is not None else ConnectorConfig(**options)
        self.target = _make_target(self.config)
        self._pool: ThreadPoolExecutor | None = None
        self._links: list[RouterLink] = []
        self._watcher: CancelWatcher | None = None
        self._threads: ThreadCache | None = None
        self._started = False

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
                                  self._threads)
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
