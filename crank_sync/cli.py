"""Command-line entry points (``crank-router``, ``crank-connector``): settings -> config -> run
until SIGTERM/SIGINT.

The settings themselves (flags, ``CRANK_*`` environment variables, ``--config`` TOML file) are
derived from the config dataclasses in :mod:`crank_sync.settings`. Logging set-up, printing and
signal handling live here only; the library itself never prints.
"""
from __future__ import annotations

import errno
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import settings
from .config import redact_url
from .errors import ListenError, PluginError, SettingError
from .workers import Supervisor

#: Exit status for invalid settings, as argparse uses.
EXIT_USAGE = 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )


def _install_signal_handlers() -> threading.Event:
    """Return an event that SIGTERM or SIGINT sets; the handler only sets it.

    Installed before the ports are printed, so a supervisor that signals as soon as it has read
    them never meets the default (killing) handler.
    """
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _wait(stop: threading.Event) -> None:
    while not stop.wait(1.0):
        pass


def _load(spec: settings.Spec,
          argv: Sequence[str] | None) -> tuple[settings.Resolved, Any] | None:
    """Parse and validate; on error print one line naming the setting and return None."""
    try:
        resolved = settings.parse(spec, argv)
        config = resolved.build()
    except settings.SettingError as err:
        print(f"{spec.prog}: error: {err}", file=sys.stderr)
        return None
    if resolved.print_config:
        print(json.dumps(resolved.effective(config), indent=2, sort_keys=True, default=str))
    return resolved, config


def _prepare(spec: settings.Spec, argv: Sequence[str] | None
             ) -> tuple[settings.Resolved, Any, threading.Event] | int:
    """Settings, logging and signal handlers; an exit code instead when there is nothing to run
    (a bad setting, or ``--print-config``)."""
    loaded = _load(spec, argv)
    if loaded is None:
        return EXIT_USAGE
    resolved, config = loaded
    if resolved.print_config:
        return 0
    _setup_logging(resolved.values["log_level"])
    return resolved, config, _install_signal_handlers()


def router_main(argv: Sequence[str] | None = None) -> int:
    prepared = _prepare(settings.ROUTER, argv)
    if isinstance(prepared, int):
        return prepared
    resolved, config, stop = prepared
    workers = resolved.values["workers"]
    if workers < 1:
        print(f"{settings.ROUTER.prog}: error: workers: must be at least 1, got {workers}",
              file=sys.stderr)
        return EXIT_USAGE
    if workers > 1:
        supervisor = Supervisor(sys.argv[1:] if argv is None else argv, workers,
                                config.http_port, config.registration_port,
                                resolved.values["drain_timeout"] + config.drain_grace + 15.0)
        return supervisor.run(stop)
    from .router import Router  # here: crank-connector does not load the router's modules

    try:
        router = Router(config)
    except PluginError as err:
        print(_plugin_error(resolved, err), file=sys.stderr)
        return EXIT_USAGE
    try:
        router.start()
    except ListenError as err:
        print(_listen_error(resolved, err), file=sys.stderr)
        return EXIT_USAGE
    except SettingError as err:  # e.g. a certificate or key that does not load
        print(f"{settings.ROUTER.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as err:
        print(f"{settings.ROUTER.prog}: error: cannot start: {' '.join(str(err).split())}",
              file=sys.stderr)
        return EXIT_USAGE
    print(f"router http port: {router.http_port}", flush=True)
    print(f"router registration port: {router.registration_port}", flush=True)
    try:
        _wait(stop)
    finally:
        ok = router.stop(timeout=resolved.values["drain_timeout"])
    return 0 if ok else 1


def connector_main(argv: Sequence[str] | None = None) -> int:
    prepared = _prepare(settings.CONNECTOR, argv)
    if isinstance(prepared, int):
        return prepared
    resolved, config, stop = prepared
    from .connector import Connector  # here: crank-router does not load it

    try:
        connector = Connector(config=config).start()
    except PluginError as err:
        print(_plugin_error(resolved, err), file=sys.stderr)
        return EXIT_USAGE
    except SettingError as err:  # e.g. a client certificate that does not load
        print(f"{settings.CONNECTOR.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as err:
        print(f"{settings.CONNECTOR.prog}: error: cannot start: {' '.join(str(err).split())}",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        # "serving" only once a router has the route: until then nothing reaches the target
        while not stop.is_set() and connector.idle_count() == 0:
            stop.wait(0.1)
        if not stop.is_set():
            via = ", ".join(s["router"] for s in connector.status()
                            if s["state"] == "registered")
            print(f"connector {config.connector_instance_id} serving route {config.route} "
                  f"-> {redact_url(config.target)} via {via}", flush=True)
        _wait(stop)
    finally:
        ok = connector.stop(resolved.values["stop_timeout"])
    return 0 if ok else 1


def _plugin_error(resolved: settings.Resolved, err: PluginError) -> str:
    """One line: the spec, what is wrong with it, and where it was given."""
    source = resolved.sources.get("plugins", "default")
    return f"{resolved.spec.prog}: error: {err} (from {source})"


def _listen_error(resolved: settings.Resolved, err: ListenError) -> str:
    """One line: which port, which setting sets it (flag, variable, file key), what to do."""
    if err.errno == errno.EADDRNOTAVAIL or isinstance(err.__cause__, socket.gaierror):
        host = resolved.spec.setting("host")
        return (f"{resolved.spec.prog}: error: host: cannot listen on {err.host!r}: "
                f"{err.strerror}: give an address of this machine with {host.flags[0]} or "
                f"{host.env} (e.g. 127.0.0.1)")
    setting = resolved.spec.setting(err.setting)
    source = resolved.sources.get(err.setting, "default")
    where = f"set by {source}" if source != "default" else "the default"
    how = f"{setting.flags[0]} or {setting.env}"
    if err.errno == errno.EADDRINUSE:
        problem = f"port {err.port} on {err.host} is already in use ({where})"
    else:
        problem = f"cannot listen on {err.host}:{err.port} ({where}): {err.strerror}"
    return (f"{resolved.spec.prog}: error: {err.setting}: {problem}: stop what listens there "
            f"or choose another port with {how} (0 picks a free one)")
