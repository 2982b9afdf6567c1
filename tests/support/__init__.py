"""Helpers for the crank_sync test suite, imported as ``from support import ...``.

``tests`` is on ``sys.path`` (``pythonpath = tests`` in setup.cfg's ``[tool:pytest]``), so this
is an ordinary package; the fixtures that own what these helpers start are in
``tests/conftest.py``. Every public name of the modules below is re-exported here:

* ``waiting``: ``wait_for``, polling a condition until a deadline; ``standing_still``.
* ``data``: deterministic payloads and their digests.
* ``frames``: websocket frames built by hand, masked by a byte-at-a-time reference.
* ``sockets``: ``LOOPBACK`` and raw-socket exchanges and reads.
* ``urls``: a router's client, admin and registration addresses; a plain GET.
* ``services``: ``TargetService``, the real HTTP target, and its endpoints' constants.
* ``peers``: scripted peers, a router stand-in and a v1 connector stand-in.
* ``protocols``: the protocol set-ups and the marks that run a test over each.
* ``factories``: the router and connector factories behind the fixtures.

``processes`` (the router, connectors and target as subprocesses, counted with psutil, for
``tests/faults``) is imported as ``support.processes`` and not re-exported: its names (``get``, ``session``,
``Proc``) are too general for the package's namespace.

tests/README.rst is the map of the suite: which directory holds what.
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
from .sockets import (
    LOOPBACK,
    ResponseReader,
    closed_port,
    is_closed,
    raw_exchange,
    read_until_closed,
)
from .urls import admin_url, client_url, http_get, registration_url
from .waiting import standing_still, wait_for

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
    "admin_url",
    "both_protocols",
    "client_url",
    "closed_port",
    "deterministic_bytes",
    "http_get",
    "is_closed",
    "raw_exchange",
    "read_until_closed",
    "receive_until_closed",
    "reference_mask",
    "registered",
    "registration_url",
    "route_key",
    "sha256",
    "single_protocols",
    "standing_still",
    "wait_for",
    "ws_frame",
]
