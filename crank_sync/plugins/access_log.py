"""``access-log``: one JSON object per request, a line each (JSON Lines), to a file or stderr.

Options: ``path`` (a file, appended to; ``-`` for stderr), else the ``CRANK_ACCESS_LOG``
environment variable, else stderr. The file is opened once, when the listener is made (a file
that cannot be opened stops the program from starting); each line is written and flushed under
a lock, so lines of concurrent requests never mix and a crash loses none. A listener has no
close hook: the file stays open for the life of the process (:meth:`AccessLog.close` closes it
for a program that makes and drops routers).

A router's line, written in ``on_complete``::

    {"time": "2024-05-01T12:00:00.123Z", "client": "10.0.0.7", "method": "GET",
     "target": "/svc/items?page=2", "route": "svc", "status": 200, "bytes_in": 0,
     "bytes_out": 5120, "duration_ms": 12.4, "socket_wait_ms": 0.1,
     "connector": "9b2c...", "protocol": "cranker_3.0", "request_id": "...", "error": null}

``time`` is when the request began (UTC); ``route``, ``connector`` and ``protocol`` are null
before they were known, ``status`` when no response was made; ``error`` is what ended a failed
request (``"NoConnectorAvailable: ..."``).

The same listener works on a connector (``crank-connector --plugin access-log``): a line per
request it replayed, with ``router`` (the router's URL as configured) in place of ``client``,
``connector`` and ``socket_wait_ms``::

    {"time": "...", "router": "ws://10.0.0.1:9070", "method": "GET", "target": "/svc/items",
     "route": "svc", "status": 200, "bytes_in": 0, "bytes_out": 5120, "duration_ms": 11.2,
     "protocol": "cranker_3.0", "request_id": "...", "error": null}
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, TextIO

from ..config import redact_url
from ..hooks import ConnectorListener, ProxyInfo, ProxyListener, RequestInfo

#: The environment variable with the path, when no ``path`` option is given.
PATH_ENV = "CRANK_ACCESS_LOG"

_UNKNOWN = ("-", "(none)", "")


class AccessLog(ProxyListener, ConnectorListener):
    """Writes one JSON line per request to ``path`` (``-``: stderr), on a router or a
    connector; see the module doc."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            path = os.environ.get(PATH_ENV) or "-"
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path != "-":
            try:
                self._file = open(path, "a", encoding="utf-8")  # open for the process
            except OSError as err:
                raise ValueError(f"cannot open {path!r}: "
                                 f"{err.strerror or err}: give path= a file that can be "
                                 f"written (or - for stderr)") from None

    def on_complete(self, info: ProxyInfo | RequestInfo) -> None:
        if isinstance(info, RequestInfo):
            self.write(connector_record(info))
        else:
            self.write(router_record(info))

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line and flush it."""
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            out = self._file if self._file is not None else sys.stderr
            out.write(line)
            out.flush()

    def close(self) -> None:
        """Close the file (not stderr); later lines raise, and are logged by the router."""
        with self._lock:
            if self._file is not None and not self._file.closed:
                self._file.close()

    def __repr__(self) -> str:
        return f"AccessLog({self.path!r})"


def router_record(info: ProxyInfo) -> dict[str, Any]:
    """What one request at the router comes to, for one line."""
    duration = info.duration
    return {
        "time": _iso(time.time() - duration),
        "client": info.client_address,
        "method": info.method,
        "target": info.target,
        "route": _known(info.route),
        "status": info.status,
        "bytes_in": info.bytes_in,
        "bytes_out": info.bytes_out,
        "duration_ms": round(duration * 1000, 1),
        "socket_wait_ms": round(info.socket_wait * 1000, 1),
        "connector": _known(info.connector_instance_id),
        "protocol": _known(info.protocol),
        "request_id": info.request_id,
        "error": error_text(info.error),
    }


def connector_record(info: RequestInfo) -> dict[str, Any]:
    """What one request a connector replayed comes to, for one line."""
    duration = max(0.0, time.monotonic() - info.started)
    protocol = info.protocol if info.protocol.startswith("cranker_") else f"cranker_{info.protocol}"
    return {
        "time": _iso(time.time() - duration),
        "router": redact_url(info.router),
        "method": info.method,
        "target": info.target,
        "route": _known(info.route),
        "status": info.status,
        "bytes_in": info.bytes_in,
        "bytes_out": info.bytes_out,
        "duration_ms": round(duration * 1000, 1),
        "protocol": protocol,
        "request_id": info.request_id,
        "error": error_text(info.error),
    }


def error_text(err: BaseException | None) -> str | None:
    if err is None:
        return None
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _known(value: str) -> str | None:
    return None if value in _UNKNOWN else value


def _iso(epoch: float) -> str:
    millis = int(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{millis:03d}Z"
