"""Registration rules, both halves (PROTOCOL.md, "Registration"): what the connector offers,
what the router picks, and what the connector concludes from the router's 101."""
from __future__ import annotations

import pytest

from crank_sync.errors import BadRequest
from crank_sync.protocol.registration import (
    SUPPORTED_VERSIONS,
    concluded_version,
    negotiate,
    offer_headers,
    offered_subprotocols,
)


def _router_reads(headers: list[str]) -> tuple[list[str], str | None]:
    """What a router reads from the offer: the subprotocol tokens and the legacy header."""
    values, legacy = [], None
    for line in headers:
        name, _, value = line.partition(":")
        if name.lower() == "sec-websocket-protocol":
            values.append(value)
        elif name.lower() == "crankerprotocol":
            legacy = value
    return offered_subprotocols(values), legacy


# connector offers -> router speaks -> (router picks, subprotocol echoed, connector concludes)
# a ``None`` pick means the router refuses with 400.
BOTH_HALVES = [
    pytest.param(("1.0",), ("1.0",), "1.0", "cranker_1.0", "1.0", id="v1-v1"),
    pytest.param(("3.0",), ("3.0",), "3.0", "cranker_3.0", "3.0", id="v3-v3"),
    pytest.param(("3.0", "1.0"), ("3.0", "1.0"), "3.0", "cranker_3.0", "3.0", id="both-both"),
    pytest.param(("1.0", "3.0"), ("3.0", "1.0"), "1.0", "cranker_1.0", "1.0",
                 id="both-both-connector-prefers-v1"),
    pytest.param(("3.0", "1.0"), ("1.0",), "1.0", "cranker_1.0", "1.0", id="both-v1only"),
    pytest.param(("3.0", "1.0"), ("3.0",), "3.0", "cranker_3.0", "3.0", id="both-v3only"),
    pytest.param(("1.0",), ("3.0", "1.0"), "1.0", "cranker_1.0", "1.0", id="v1-both"),
    pytest.param(("3.0",), ("3.0", "1.0"), "3.0", "cranker_3.0", "3.0", id="v3-both"),
    pytest.param(("1.0",), ("3.0",), None, None, None, id="v1-v3only-refused"),
    pytest.param(("3.0",), ("1.0",), None, None, None, id="v3-v1only-refused"),
]


@pytest.mark.parametrize(("offers", "speaks", "picked", "echo", "concluded"), BOTH_HALVES)
def test_offer_pick_conclude(offers: tuple[str, ...], speaks: tuple[str, ...],
                             picked: str | None, echo: str | None, concluded: str | None) -> None:
    offered, legacy = _router_reads(offer_headers("svc", offers, message_limit=16384))
    if picked is None:
        with pytest.raises(BadRequest):
            negotiate(offered, legacy, speaks)
        return
    assert negotiate(offered, legacy, speaks) == (picked, echo)
    assert concluded_version(echo, offers) == concluded


def test_legacy_header_only_with_v1_offered() -> None:
    assert "CrankerProtocol: 1.0" in offer_headers("r", ("3.0", "1.0"), message_limit=1)
    assert "CrankerProtocol: 1.0" in offer_headers("r", ("1.0",), message_limit=1)
    assert not any(h.startswith("CrankerProtocol")
                   for h in offer_headers("r", ("3.0",), message_limit=1))


def test_domain_and_token_in_the_offer() -> None:
    headers = offer_headers("r", ("3.0", "1.0"), message_limit=99, domain="a.example", token="t")
    assert headers[0] == "Route: r"
    assert "Authorization: Bearer t" in headers
    assert "Domain: a.example" in headers
    assert "CrankSync-Max-Message: 99" in headers
    # Domain is a v3 header: a v1-only connector does not send it
    assert not any(h.startswith("Domain")
                   for h in offer_headers("r", ("1.0",), message_limit=1, domain="a.example"))
    assert not any(h.startswith("Domain") for h in offer_headers("r", ("3.0",), message_limit=1))


# connector offered -> router echoed -> connector concludes (None: give up on this router)
CONCLUSIONS = [
    pytest.param(("3.0", "1.0"), None, "1.0", id="no-echo-means-v1"),
    pytest.param(("3.0", "1.0"), "", "1.0", id="empty-echo-means-v1"),
    pytest.param(("3.0",), None, None, id="no-echo-v3-only-connector"),
    pytest.param(("3.0", "1.0"), "CRANKER_3.0", "3.0", id="echo-upper-case"),
    pytest.param(("3.0", "1.0"), " cranker_1.0 ", "1.0", id="echo-padded"),
    pytest.param(("1.0",), "cranker_3.0", None, id="echo-not-offered"),
    pytest.param(("3.0", "1.0"), "cranker_9.9", None, id="echo-unknown"),
    pytest.param(("3.0", "1.0"), "chat", None, id="echo-foreign"),
]


@pytest.mark.parametrize(("offered", "echo", "concluded"), CONCLUSIONS)
def test_connector_concludes(offered: tuple[str, ...], echo: str | None,
                             concluded: str | None) -> None:
    assert concluded_version(echo, offered) == concluded


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


def test_offered_subprotocols_splits_every_header() -> None:
    assert offered_subprotocols(["cranker_3.0, cranker_1.0", " ,chat", ""]) == [
        "cranker_3.0", "cranker_1.0", "chat"]
