"""The Router: two ThreadingHTTPServer listeners around one socket registry."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..config import RouterConfig
from ..errors import ListenError
from ..plugin_loader import load_plugins
from ..threads import ThreadCache
from ..ws import masking
from .core import RouterCore
from .deadlines import Deadlines
from .pool import SocketRegistry
from .proxy import ClientHandler
from .registration import RegistrationHandler
from .security import PendingLimit, PendingTicket, server_context
from .tls_probe import start_tls_or_refuse

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose worker threads are named, reused (:class:`ThreadCache`) and
    joined on stop."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 core: RouterCore, name: str, tls: ssl.SSLContext | None = None,
                 pending: PendingLimit | None = None) -> None:
        self.core = core
        self.tls = tls
        self.pending = pending
        self.name = name
        self._lock = threading.Lock()
        self.workers = ThreadCache(f"crank-router-{name}")
        self._connections: set[socket.socket] = set()
        #: Connections admitted under ``pending`` whose head has not been read yet.
        self._tickets: dict[Any, PendingTicket] = {}
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        ticket = None
        if self.pending is not None:
            ticket = self.pending.admit(client_address[0])
            if ticket is None:  # over the cap: closed here, before a thread waits on it
                request.close()
                return
        with self._lock:
            self._connections.add(request)
            if ticket is not None:
                self._tickets[request] = ticket
        try:
            self.workers.submit(self._work, request, client_address)
        except RuntimeError:  # stopping: no thread for this connection
            with self._lock:
                self._connections.discard(request)
            self.head_done(request)
            self.shutdown_request(request)

    def head_done(self, request: Any) -> None:
        """The connection's request head has been read (or it ended): it is no longer
        pending. Safe to call more than once."""
        with self._lock:
            ticket = self._tickets.pop(request, None)
        if ticket is not None:
            ticket.release()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                request = self._handshake(request, client_address)
                if request is None:
                    return
            self.process_request_thread(request, client_address)
        finally:
            if request is not None:
                self.head_done(request)
                with self._lock:
                    self._connections.discard(request)

    def _handshake(self, request: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        """TLS handshake on this worker thread, bounded by ``header_timeout``: a client that
        connects and says nothing holds up no one else."""
        assert self.tls is not None
        timeout = self.core.config.header_timeout
        if not start_tls_or_refuse(request, timeout, self.core.deadlines,
                                   f"TLS handshake from {client_address}"):
            with self._lock:
                self._connections.discard(request)
            request.close()
            return None
        try:
            # the TLS socket takes the file descriptor over: track and close it from now on
            tls = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as err:
            log.info("TLS set-up with %s failed: %s", client_address, err)
            self.head_done(request)
            with self._lock:
                self._connections.discard(request)
            request.close()
            return None
        with self._lock:
            self._connections.discard(request)
            self._connections.add(tls)
            ticket = self._tickets.pop(request, None)
            if ticket is not None:
                self._tickets[tls] = ticket
        key = self.core.deadlines.add(tls, timeout, f"TLS handshake from {client_address}")
        try:
            tls.settimeout(timeout)
            tls.do_handshake()
            return tls
        except (ssl.SSLError, OSError) as err:
            log.info("TLS handshake with %s on the %s port failed: %s", client_address,
                     self.name, err)
            self.head_done(tls)
            with self._lock:
                self._connections.discard(tls)
            tls.close()
            return None
        finally:
            self.core.deadlines.cancel(key)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("unexpected error serving %s on the %s port", client_address, self.name)

    def close_connections(self, keep: set[Any] | frozenset[Any] = frozenset()) -> None:
        """Shut down every open connection except those in ``keep``."""
        with self._lock:
            connections = [c for c in self._connections if c not in keep]
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_workers(self, deadline: float) -> bool:
        return self.workers.stop(deadline)


class Router:
    """A Cranker router: a client port and a registration port.

    Options come as a :class:`RouterConfig` or as its fields by keyword
    (``Router(http_port=0, registration_port=0)``), not both. ``start()`` binds both listeners
    and returns; ``stop()`` closes them, ends every connector socket with 1001, and joins every
    thread it started. A stopped router cannot start again: make a new one.

    ``listeners``: :class:`~crank_sync.hooks.ProxyListener` objects, called in that order for
    every request (see :mod:`crank_sync.hooks`); then the ones the config's ``plugins`` name,
    made here (:mod:`crank_sync.plugin_loader`; a bad one raises
    :class:`~crank_sync.errors.PluginError`).
    """

    def __init__(self, config: RouterConfig | None = None, *,
                 listeners: Iterable[object] = (), **options: Any) -> None:
        if config is not None and options:
            raise TypeError("Router() takes a RouterConfig or keyword options, not both")
        self.config = config if config is not None else RouterConfig(**options)
        if self.config.plugins:
            listeners = (*listeners, *load_plugins(self.config.plugins, "router"))
        self._core = RouterCore(self.config, listeners)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False

    @property
    def http_port(self) -> int:
        return int(self._servers[0].server_address[1])

    @property
    def registration_port(self) -> int:
        return int(self._servers[1].server_address[1])

    @property
    def listeners(self) -> tuple[object, ...]:
        """The listeners, in the order they are called: the limiter (when a rate limit or a
        concurrency cap is set), those given, then the plugins'."""
        return self._core.hooks.listeners

    @property
    def registry(self) -> SocketRegistry:
        return self._core.registry

    def idle_sockets(self, route: str) -> int:
        """Idle connector sockets registered for ``route`` (``"*"`` for the catch-all)."""
        return self._core.registry.idle_count(route)

    def start(self) -> Router:
        if self._started:
            raise RuntimeError("router already started")
        if self._stopped:
            raise RuntimeError("router was stopped and cannot start again: create a new Router")
        cfg = self.config
        masking.preload()  # not later, in the middle of the traffic (see ws/masking.py)
        client_tls = None
        if cfg.tls_cert and cfg.tls_key:
            client_tls = server_context(cfg.tls_cert, cfg.tls_key)
        registration_tls = None
        if cfg.registration_tls_cert and cfg.registration_tls_key:
            registration_tls = server_context(cfg.registration_tls_cert,
                                              cfg.registration_tls_key,
                                              cfg.registration_client_ca, "registration_")
        self._core.deadlines = Deadlines()
        try:
            self._servers.append(_Server((cfg.host, cfg.http_port), ClientHandler, self._core,
                                         "client", client_tls))
            pending = PendingLimit(cfg.registration_max_pending_per_address,
                                   cfg.registration_max_pending)
            self._servers.append(_Server((cfg.host, cfg.registration_port), RegistrationHandler,
                                         self._core, "registration", registration_tls, pending))
        except OSError as err:
            setting = ("http_port", "registration_port")[len(self._servers)]
            for server in self._servers:
                server.server_close()
            self._servers.clear()
            self._core.deadlines.stop()
            raise ListenError(err, setting, cfg.host, getattr(cfg, setting)) from err
        host, port = self.config.host, self.http_port
        self._core.by_name = f"{host}:{port}" if cfg.via_name == "crank_sync" else cfg.via_name
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"crank-router-{server.name}-listener",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._started = True
        log.info("router listening: http %s:%d, registration %s:%d", cfg.host, self.http_port,
                 cfg.host, self.registration_port)
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Drain, then stop: True when every in-flight request finished and every thread ended.

        The client port stops accepting at once and idle keep-alive connections close;
        ``/health`` answers 503 meanwhile. In-flight requests get up to ``timeout`` seconds
        (default: ``drain_timeout``); then connector sockets close with 1001.
        """
        if not self._started:
            return True
        drain = self.config.drain_timeout if timeout is None else timeout
        core = self._core
        core.draining = True  # the health checks answer 503 from here on
        if self.config.drain_grace:
            log.info("router stopping: health checks answer 503; still serving for %.1fs",
                     self.config.drain_grace)
            threading.Event().wait(self.config.drain_grace)  # the load balancer's turn
        client, registration = self._servers
        client.shutdown()
        client.server_close()
        drain_until = time.monotonic() + drain
        for websocket in list(core.websockets):  # they would hold the drain up to its end
            websocket.going_away()
        client.close_connections(keep=core.busy_connections)
        while core.busy_connections and time.monotonic() < drain_until:
            time.sleep(0.02)
        drained = not core.busy_connections
        if not drained:
            log.warning("router stop: %d request(s) still in flight after %.1fs; closing",
                        len(core.busy_connections), drain)
        registration.shutdown()
        registration.server_close()
        for sock in core.registry.close():
            sock.ws.close(1001, "router stopping")
        for server in self._servers:
            server.close_connections()
        deadline = time.monotonic() + 10.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        ok = all(server.join_workers(deadline) for server in self._servers) and drained
        core.deadlines.stop()
        if core.limiter is not None:
            core.limiter.close()
        self._started = False
        self._stopped = True
        log.info("router stopped%s", "" if ok else " (not clean)")
        return ok

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
