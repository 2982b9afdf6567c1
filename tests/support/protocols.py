"""The protocol set-ups a test can run over, and the marks that run a test over each."""

from __future__ import annotations

import pytest

# Tests that should run over every protocol set-up decorate themselves with this; it overrides
# the ``cranker_protocols`` fixture, which the connector factory uses as its default: v1 only,
# v3 (preferred, as a connector offers it), and a route served by one v1 and one v3 connector.
V1 = ("1.0",)
V3_PREFERRED = ("3.0", "1.0")
MIXED = ("mixed",)
both_protocols = pytest.mark.parametrize("cranker_protocols", [V1, V3_PREFERRED, MIXED],
                                         ids=["v1", "v3", "mixed"])
#: For tests about one connector's own identity or sockets, where a pair makes no sense.
single_protocols = pytest.mark.parametrize("cranker_protocols", [V1, V3_PREFERRED],
                                           ids=["v1", "v3"])
