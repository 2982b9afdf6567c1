"""Command-line entry points: argparse -> config -> run until SIGTERM/SIGINT.

Logging set-up and signal handling live here only; the library itself never prints.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .config import SUPPORTED_PROTOCOLS, ConnectorConfig, RouterConfig
from .connector import Connector
from .router import Router


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )


def _wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT; the handler only sets a flag."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1.0):
        pass


def router_main(argv: Sequence[str] | None = None) -> int:
    defaults = RouterConfig()
    parser = argparse.ArgumentParser(description="Run a crank_sync Cranker router.")
    parser.add_argument("--host", default=defaults.host,
                        help="address to bind (default %(default)s)")
    parser.add_argument("--http-port", type=int, default=defaults.http_port,
                        help="client-facing port, 0 for any (default %(default)s)")
    parser.add_argument("--registration-port", type=int, default=defaults.registration_port,
                        help="port connectors register on, 0 for any (default %(default)s)")
    parser.add_argument("--connector-max-wait", type=float, default=defaults.connector_max_wait,
                        help="seconds a request waits for an idle connector socket before 503")
    parser.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout,
                        help="seconds without data from a connector before 504 or abort")
    parser.add_argument("--client-timeout", type=float, default=defaults.client_timeout,
                        help="seconds a client connection may stay silent")
    parser.add_argument("--max-header-bytes", type=int, default=defaults.max_header_bytes,
                        help="largest request head accepted; larger gets 431")
    parser.add_argument("--ping-interval", type=float, default=defaults.ping_interval,
                        help="seconds between pings on idle connector sockets")
    parser.add_argument("--via-name", default=defaults.via_name, help="name used in Via")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        config = RouterConfig(
            host=args.host,
            http_port=args.http_port,
            registration_port=args.registration_port,
            connector_max_wait=args.connector_max_wait,
            idle_timeout=args.idle_timeout,
            client_timeout=args.client_timeout,
            max_header_bytes=args.max_header_bytes,
            ping_interval=args.ping_interval,
            via_name=args.via_name,
        )
    except ValueError as err:
        parser.error(str(err))
    router = Router(config)
    try:
        router.start()
    except OSError as err:
        print(f"cannot start router: {err}", file=sys.stderr)
        return 1
    print(f"router http port: {router.http_port}", flush=True)
    print(f"router registration port: {router.registration_port}", flush=True)
    try:
        _wait_for_signal()
    finally:
        ok = router.stop()
    return 0 if ok else 1


def connector_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a crank_sync Cranker connector.")
    parser.add_argument("--router", action="append", required=True,
                        help="router registration URL, e.g. ws://127.0.0.1:9070 (repeatable)")
    parser.add_argument("--route", required=True, help="route to serve ('*' for catch-all)")
    parser.add_argument("--target", required=True, help="target service, e.g. http://127.0.0.1:5000")
    parser.add_argument("--window", type=int, default=2, help="idle sockets per router")
    parser.add_argument("--component", default=None, help="component name (default: the route)")
    parser.add_argument("--protocol", action="append", default=None,
                        help=f"versions to offer, in order of preference "
                             f"(repeatable or comma-separated; supported: {SUPPORTED_PROTOCOLS})")
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--stop-timeout", type=float, default=10.0,
                        help="seconds to wait for in-flight requests on SIGTERM")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    protocols = tuple(p.strip() for item in (args.protocol or ["1.0"]) for p in item.split(",")
                      if p.strip())
    try:
        config = ConnectorConfig(
            target=args.target,
            route=args.route,
            routers=tuple(args.router),
            component_name=args.component or args.route,
            sliding_window=args.window,
            protocols=protocols,
            ping_interval=args.ping_interval,
            idle_timeout=args.idle_timeout,
        )
    except ValueError as err:
        parser.error(str(err))
    connector = Connector(config=config).start()
    print(f"connector {config.connector_instance_id} serving route {config.route} "
          f"-> {config.target}", flush=True)
    try:
        _wait_for_signal()
    finally:
        ok = connector.stop(args.stop_timeout)
    return 0 if ok else 1
