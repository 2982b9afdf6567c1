"""Picking the Cranker version at registration (PROTOCOL.md, "Registration")."""
from __future__ import annotations

import pytest

from crank_sync.errors import BadRequest
from crank_sync.router.registration import SUPPORTED_VERSIONS, negotiate

NEGOTIATE_ROWS = [
    pytest.param(["cranker_1.0"], None, "1.0", id="v1-subprotocol"),
    pytest.param(["cranker_1.0"], "1.0", "1.0", id="v1-subprotocol-and-legacy"),
    pytest.param(["CRANKER_1.0"], None, "1.0", id="upper-case"),
    pytest.param(["Cranker_1.0"], None, "1.0", id="mixed-case"),
    pytest.param([" cranker_1.0 "], None, "1.0", id="padded"),
    pytest.param(["cranker_9.9", "cranker_1.0"], "1.0", "1.0", id="unsupported-first-skipped"),
    pytest.param(["chat", "cranker_2.0", "cranker_1.0"], None, "1.0", id="foreign-tokens-skipped"),
    pytest.param([], "1.0", "1.0", id="legacy-only"),
    pytest.param([], " 1.0 ", "1.0", id="legacy-padded"),
]


@pytest.mark.parametrize(("offered", "legacy", "version"), NEGOTIATE_ROWS)
def test_negotiate(offered: list[str], legacy: str | None, version: str) -> None:
    chosen, echo = negotiate(offered, legacy)
    assert chosen == version
    if offered:
        assert echo is not None and echo.lower() == f"cranker_{version}"
        # RFC 6455: the server must select one of the subprotocols the client offered.
        assert echo in [t.strip() for t in offered]
    else:
        assert echo is None


def test_first_supported_subprotocol_wins() -> None:
    offered = [f"cranker_{v}" for v in SUPPORTED_VERSIONS] + ["cranker_1.0"]
    assert negotiate(offered, None) == (SUPPORTED_VERSIONS[0], f"cranker_{SUPPORTED_VERSIONS[0]}")


@pytest.mark.skipif("3.0" not in SUPPORTED_VERSIONS, reason="router does not speak v3 yet")
@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["cranker_3.0", "cranker_1.0"], ("3.0", "cranker_3.0")),
        (["cranker_1.0", "cranker_3.0"], ("1.0", "cranker_1.0")),
    ],
)
def test_first_offered_wins_when_both_supported(offered: list[str], expected: tuple) -> None:
    assert negotiate(offered, "1.0") == expected


REFUSALS = [
    pytest.param([], None, id="nothing-offered"),
    pytest.param([], "2.0", id="legacy-unsupported"),
    pytest.param([], "", id="legacy-empty"),
    pytest.param(["cranker_9.9"], None, id="subprotocol-unsupported"),
    pytest.param(["cranker_9.9"], "1.0", id="subprotocol-decides-not-legacy"),
    pytest.param(["chat", "superchat"], "1.0", id="foreign-subprotocols-only"),
    pytest.param(["cranker_"], None, id="prefix-without-version"),
]


@pytest.mark.parametrize(("offered", "legacy"), REFUSALS)
def test_negotiate_refuses(offered: list[str], legacy: str | None) -> None:
    with pytest.raises(BadRequest):
        negotiate(offered, legacy)
