"""A connector's sockets at one router: the sliding window, what registration became, and
the requests' way to the target (through the listeners when there are any)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ..config import ConnectorConfig, redact_url
from ..errors import CrankError, ListenerFailed, RegistrationRefused, TlsError, WebSocketError
from ..hooks import RegistrationState
from ..protocol import RequestHead, tunnel
from ..threads import ThreadCache
from ..ws.frames import Opcode
from . import hooked
from .handshake import open_websocket, refusal_text
from .listening import ConnectorHooks, RegistrationNotices
from .registering import SocketState, endpoint, handshake_headers
from .target import Cancel, Target, TargetClient, TargetResponse, send_request
from .tls import client_context
from .watcher import CancelWatcher
from .worker import SocketWorker

__all__ = ["QUIET_ATTEMPTS", "RouterLink"]

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
                 pool: ThreadPoolExecutor, watcher: CancelWatcher, threads: ThreadCache,
                 hooks: ConnectorHooks, address: str | None = None) -> None:
        self.config = config
        self.url = url
        #: The router's address when ``url``'s host name stands for several (router_dns).
        self.address = address
        #: What became of the registration here, for Connector.status().
        self.state = "connecting"
        self.target = target
        #: Websocket upgrades can reach this target (an HTTP service, not a WSGI app).
        self.offers_tunnels = isinstance(target, TargetClient)
        self.hooks = hooks
        #: Registration changes still to report to the listeners (decided under ``_lock``).
        self.notices = RegistrationNotices(hooks, url)
        self.pool = pool
        self.watcher = watcher
        #: Where socket workers run.
        self.threads = threads
        #: websocket-client's TLS options: our own context, never global settings
        self.sslopt: dict[str, object] = {}
        if url.startswith("wss://"):
            self.sslopt = {"context": client_context(config.ca_file, config.verify,
                                                     config.client_cert, config.client_key)}
        #: ``url`` as logs show it (no password; the address when it is one of several)
        self.shown = redact_url(url) + (f" ({address})" if address else "")
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

    def send(self, head: RequestHead, body: Iterable[bytes] | None, cancel: Cancel,
             protocol: str) -> TargetResponse:
        """The request to the target: through the listeners when there are any."""
        if self.hooks.per_request:
            return hooked.send(self.hooks, self.target, head, body, cancel, router=self.url,
                               route=self.config.route, protocol=protocol)
        return send_request(self.target, head, body, cancel)

    def tunnel(self, head: RequestHead, protocol: str,
               serve: hooked.Serve) -> TargetResponse | None:
        """A websocket upgrade, ``serve(head, ended)``: through the listeners when there are
        any (:func:`hooked.tunnel`)."""
        if self.hooks.per_request:
            return hooked.tunnel(self.hooks, head, serve, router=self.url,
                                 route=self.config.route, protocol=protocol)
        return serve(head, _nothing)

    def upgrade_headers(self) -> list[str]:
        """The headers of a registration (or deregistration) upgrade, the listeners' merged
        in; ListenerFailed when one of those fails."""
        cfg = self.config
        headers = handshake_headers(cfg.route, cfg.protocols, cfg.domain, cfg.token)
        if self.hooks.registration_headers:
            # the capability is this connector's to state (below): no listener may claim it
            name = tunnel.CAPABILITIES_HEADER.lower()
            headers = [h for h in self.hooks.upgrade_headers(self.url, headers)
                       if h.partition(":")[0].strip().lower() != name]
        if self.offers_tunnels:  # crank_sync's extension; other routers ignore the header
            headers.append(f"{tunnel.CAPABILITIES_HEADER}: {tunnel.WEBSOCKET}")
        return headers

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
            self.state = "registered"
            self._attempts = 0
            if came_up:
                self.notices.change(RegistrationState.REGISTERED)
        if came_up:
            log.info("registered at %s with cranker_%s for route %r%s", self.shown, version,
                     self.config.route,
                     f" again, after {failures} failed attempt(s)" if again else "")
        if wanted:
            self._spawn(wanted)
        self.notices.deliver()

    def on_connect_failed(self, worker: SocketWorker, err: CrankError) -> float:
        """A registration attempt failed: log it (quietly for the first few, unless the
        router refused), and return how long to wait before the next. The router counts as
        refusing (REFUSED) when no other socket of ours is registered there."""
        delay = self.next_backoff()
        refused = isinstance(err, RegistrationRefused | TlsError)
        text = refusal_text(err) if isinstance(err, RegistrationRefused) else str(err) or repr(err)
        with self._lock:
            attempts = self._attempts
            alone = not self._registered(worker)
            lost = self._up and alone
            if lost:
                self._up = False
            if alone and not self.stopping.is_set():
                self.state = "refused" if refused else "lost" if self._ever_up else "unreachable"
            if alone and (refused or lost) and not self.stopping.is_set():
                self.notices.change(
                    RegistrationState.REFUSED if refused else RegistrationState.LOST, text)
        if lost:
            log.warning("lost registration at %s: %s", self.shown, text)
        level = logging.WARNING if refused or attempts > QUIET_ATTEMPTS else logging.INFO
        log.log(level, "cannot register at %s: %s; retrying in %.2fs (attempt %d)", self.shown,
                text, delay, attempts)
        self.notices.deliver()
        return delay

    def on_socket_lost(self, worker: SocketWorker) -> None:
        """A registered socket closed while the connector was not stopping."""
        with self._lock:
            lost = self._up and not self._registered(worker)
            if lost:
                self._up = False
                self.state = "lost"
                self.notices.change(RegistrationState.LOST, "its last socket closed")
        if lost:
            log.warning("lost registration at %s: its last socket closed; reconnecting",
                        self.shown)
        self.notices.deliver()

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
            self.state = "deregistering"

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
        with self._lock:
            registered = any(w.state in _REGISTERED for w in self._workers)
        if not registered:  # never reached, or lost: the router holds no socket of ours
            log.debug("nothing to deregister at %s", self.shown)
            return True
        cfg = self.config
        url = endpoint(self.url, "deregister", cfg.connector_instance_id, cfg.component_name)
        try:
            ws = open_websocket(url, timeout=max(0.1, min(timeout, cfg.connect_timeout)),
                                header=self.upgrade_headers(), sslopt=self.sslopt,
                                address=self.address)
        except (WebSocketError, ListenerFailed) as err:
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


def _nothing() -> None:
    """The end of a websocket when no listener wants to know."""
