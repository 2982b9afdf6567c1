"""Helpers for the crank_sync test suite, imported as ``from support import ...``.

``tests`` is on ``sys.path`` (``pythonpath = tests`` in setup.cfg's ``[tool:pytest]``), so this
is an ordinary package; the fixtures that own what these helpers start are in
``tests/conftest.py``. Every public name of the modules below is re-exported here.
"""

from .data import deterministic_bytes, sha256
from .factories import (
    ROUTER_DEFAULTS,
    ConnectorFactory,
    MixedConnector,
    RouterFactory,
    registered,
    route_key,
)
from .frames import reference_mask, ws_frame
from .peers import FakeConnector, ScriptedRouter, receive_until_closed
from .protocols import MIXED, V1, V3_PREFERRED, both_protocols, single_protocols
from .services import (
    CHUNKED_PARTS,
    DIE_MID_BODY_DECLARED,
    DIE_MID_BODY_SENT,
    ENDLESS_CAP,
    ENDLESS_CHUNK,
    GZIP_BODY,
    GZIP_PLAIN,
    Received,
    TargetService,
)
from .sockets import LOOPBACK, ResponseReader, closed_port, raw_exchange, read_until_closed
from .waiting import wait_for

__all__ = [
    "CHUNKED_PARTS",
    "DIE_MID_BODY_DECLARED",
    "DIE_MID_BODY_SENT",
    "ENDLESS_CAP",
    "ENDLESS_CHUNK",
    "GZIP_BODY",
    "GZIP_PLAIN",
    "LOOPBACK",
    "MIXED",
    "ROUTER_DEFAULTS",
    "V1",
    "V3_PREFERRED",
    "ConnectorFactory",
    "FakeConnector",
    "MixedConnector",
    "Received",
    "ResponseReader",
    "RouterFactory",
    "ScriptedRouter",
    "TargetService",
    "both_protocols",
    "closed_port",
    "deterministic_bytes",
    "raw_exchange",
    "read_until_closed",
    "receive_until_closed",
    "reference_mask",
    "registered",
    "route_key",
    "sha256",
    "single_protocols",
    "wait_for",
    "ws_frame",
]
