"""``run_router.py --workers N``: N router processes on one host, one per core, for a load
balancer in front (one Python process uses about one core).

Worker ``i`` listens on ``http_port + i`` and ``registration_port + i`` (or on ports of its own
choosing when they are 0), and prints its ports as a single router does. The supervisor
restarts a worker that dies (after a second), passes SIGTERM and SIGINT on, waits for every
worker to drain, and exits 0 only when every one stopped cleanly. Connectors register with each
worker, as with any set of routers (several ``--router``, or ``--router-dns``).
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: What each worker runs: the router's own entry point.
_WORKER = "import sys; from crank_sync.cli import router_main; sys.exit(router_main())"
#: A worker that died is started again after this long (it may die at once, again).
_RESTART_DELAY = 1.0


class Supervisor:
    def __init__(self, argv: Sequence[str], workers: int, http_port: int,
                 registration_port: int, stop_timeout: float) -> None:
        self.argv = list(argv)
        self.count = workers
        self.http_port, self.registration_port = http_port, registration_port
        self.stop_timeout = stop_timeout
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * workers

    def _args(self, i: int) -> list[str]:
        ports = [str(p + i) if p else "0" for p in (self.http_port, self.registration_port)]
        return [sys.executable, "-c", _WORKER, *self.argv, "--workers", "1",
                "--http-port", ports[0], "--registration-port", ports[1]]

    def _spawn(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self._args(i), stdin=subprocess.DEVNULL)
        log.info("router worker %d started (pid %d)", i, self.procs[i].pid)  # type: ignore[union-attr]

    def run(self, stop: threading.Event) -> int:
        for i in range(self.count):
            self._spawn(i)
        print(f"router workers: {self.count}", flush=True)
        died_at: dict[int, float] = {}
        while not stop.wait(0.2):
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                if i not in died_at:
                    log.warning("router worker %d (pid %d) exited with %s; restarting in %.0fs",
                                i, proc.pid, proc.returncode, _RESTART_DELAY)
                    died_at[i] = now
                elif now - died_at[i] >= _RESTART_DELAY:
                    del died_at[i]
                    self._spawn(i)
        return self._stop()

    def _stop(self) -> int:
        """SIGTERM to every worker, then wait for each to drain (killed after the timeout)."""
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        clean = True
        for proc in live:
            try:
                clean = proc.wait(max(0.1, deadline - time.monotonic())) == 0 and clean
            except subprocess.TimeoutExpired:
                log.error("router worker pid %d did not stop in time: killed", proc.pid)
                proc.kill()
                proc.wait(5)
                clean = False
        return 0 if clean else 1
