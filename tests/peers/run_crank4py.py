"""Runs crank4py-connector (a Cranker v1 connector from PyPI) in its own process for the tests.

Usage: ``python run_crank4py.py ROUTER_WS_URL TARGET_URL ROUTE``. Prints ``started`` once
``create_and_start_connector`` returned, then reads commands from stdin: ``stop`` calls
``shutdown()`` (which opens a deregistration socket to the router and returns) and prints
``stopped``; ``exit`` or end of file ends the process (after a shutdown, if there was none
yet). The test stops the connector first and ends the process later, so it can check what the
shutdown itself did to the router.

It runs in a process of its own because it replaces the logging class of the whole process
(``logging.setLoggerClass``) and starts thread pools (one per socket, non-daemon threads) that
it never shuts down, so the process ends with ``os._exit``.
"""
from __future__ import annotations

import logging
import os
import sys
import time

GRACE_SECONDS = 2.0


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: run_crank4py.py ROUTER_WS_URL TARGET_URL ROUTE", file=sys.stderr)
        return 2
    router_url, target_url, route = argv
    from crank4py_connector import Config, create_and_start_connector

    logging.getLogger("crank4py-connector").setLevel(logging.INFO)
    config = Config(target_url, route, [router_url], component_name="crank4py-test")
    connector = create_and_start_connector(config)
    print("started", flush=True)
    stopped = False
    while True:
        raw = sys.stdin.readline()
        if raw.strip() == "stop" and not stopped:
            connector.shutdown()
            stopped = True
            print("stopped", flush=True)
        elif raw == "" or raw.strip() == "exit":
            break
    if not stopped:
        connector.shutdown()
        time.sleep(GRACE_SECONDS)  # let the deregistration socket reach the router
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
