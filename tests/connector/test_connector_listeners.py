"""Connector listeners on their own: how a connector takes them, which callbacks count, the
registration headers they add, the registration states they are told, and the connector's own
answers (a Reject, the 502 of a failing listener). The e2e side is
tests/e2e/test_connector_hooks.py."""
from __future__ import annotations

import pytest

from crank_sync import (
    Connector,
    ConnectorConfig,
    ConnectorListener,
    ListenerFailed,
    RegistrationState,
    Reject,
)
from crank_sync.connector.hooked import Answer, rejected
from crank_sync.connector.listening import ConnectorHooks, RegistrationNotices

OPTIONS = dict(target="http://127.0.0.1:1", route="r", routers=("ws://127.0.0.1:1",))


class Tokens(ConnectorListener):
    def __init__(self, headers: object) -> None:
        self.headers = headers

    def registration_headers(self, router):
        return self.headers


def test_listeners_by_keyword_in_the_config_or_beside_it() -> None:
    listener = ConnectorListener()
    assert Connector(**OPTIONS, listeners=[listener]).config.listeners == (listener,)
    config = ConnectorConfig(**OPTIONS, listeners=[listener])
    assert config.listeners == (listener,) and Connector(config).config is config
    beside = Connector(ConnectorConfig(**OPTIONS), listeners=[listener])
    assert beside.config.listeners == (listener,)
    with pytest.raises(TypeError, match="not both"):
        Connector(config, listeners=[listener])


@pytest.mark.parametrize("bad", [ConnectorListener(), "listener"])
def test_one_listener_not_in_a_list_is_a_type_error(bad) -> None:
    with pytest.raises(TypeError, match="list of ConnectorListener"):
        ConnectorConfig(**OPTIONS, listeners=bad)


def test_an_object_without_callbacks_is_no_listener() -> None:
    with pytest.raises(TypeError, match="not a connector listener"):
        Connector(**OPTIONS, listeners=[object()])


def test_only_overridden_callbacks_count() -> None:
    hooks = ConnectorHooks([ConnectorListener(), Tokens({})])
    assert not hooks.per_request  # no RequestInfo is ever made
    assert not hooks.registration_changed and len(hooks.registration_headers) == 1

    class Duck:  # duck-typed: the method is enough
        def on_complete(self, info):
            pass

    assert ConnectorHooks([Duck()]).per_request


BASE = ["Route: r", "Authorization: Bearer config-token", "CrankerProtocol: 1.0"]


def test_registration_headers_replace_ours_by_name_and_add_the_rest() -> None:
    hooks = ConnectorHooks([Tokens({"authorization": "Bearer fresh"}),
                            Tokens([("X-Extra", "1"), ("X-Extra", "2")])])
    assert hooks.upgrade_headers("ws://r", BASE) == [
        "Route: r", "CrankerProtocol: 1.0", "authorization: Bearer fresh", "X-Extra: 1",
        "X-Extra: 2"]
    assert ConnectorHooks([Tokens(None)]).upgrade_headers("ws://r", BASE) == BASE


@pytest.mark.parametrize("headers", [
    {"Sec-WebSocket-Key": "x"}, {"Host": "elsewhere"}, {"Bad Name": "x"}, {"X-A": "a\r\nB: b"},
])
def test_registration_headers_we_cannot_send_fail_the_attempt(headers) -> None:
    with pytest.raises(ListenerFailed, match="registration_headers of Tokens failed"):
        ConnectorHooks([Tokens(headers)]).upgrade_headers("ws://r", BASE)


def test_registration_changes_are_reported_once_each_in_order() -> None:
    seen = []

    class Watch(ConnectorListener):
        def on_registration_changed(self, router, state, reason=""):
            seen.append((router, state, reason))

    notices = RegistrationNotices(ConnectorHooks([Watch()]), "ws://r")
    for state, reason in [(RegistrationState.REFUSED, "403"), (RegistrationState.REFUSED, "403"),
                          (RegistrationState.REGISTERED, ""), (RegistrationState.LOST, "gone")]:
        notices.change(state, reason)
    assert seen == []  # decided under the link's lock, told after it
    notices.deliver()
    assert seen == [("ws://r", RegistrationState.REFUSED, "403"),
                    ("ws://r", RegistrationState.REGISTERED, ""),
                    ("ws://r", RegistrationState.LOST, "gone")]


def test_a_reject_is_answered_with_our_framing() -> None:
    answer = rejected(Reject(401, "no", {"Content-Length": "9", "Connection": "close",
                                         "WWW-Authenticate": "Key"}), "rid-1", "POST")
    assert (answer.status, answer.reason) == (401, "Unauthorized")
    assert answer.headers.items() == [
        ("WWW-Authenticate", "Key"), ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Request-Id", "rid-1"), ("Content-Length", "2")]
    assert answer.length_remaining == 2
    assert answer.read1(1) + answer.read1(10) + answer.read1(10) == b"no"


@pytest.mark.parametrize("status, method, length, body", [
    (200, "HEAD", "4", b""), (204, "GET", None, b""), (304, "GET", None, b""),
    (418, "GET", "4", b"body"),
])
def test_an_answer_without_a_body(status, method, length, body) -> None:
    answer = Answer(status, b"body", [("Content-Type", "x/y")], "rid", method)
    assert answer.headers.get("Content-Length") == length
    assert answer.read1(100) == body and answer.headers.get("Content-Type") == "x/y"


def test_registration_states_print_and_compare_as_their_values():
    from crank_sync import RegistrationState

    assert [f"{s}" for s in RegistrationState] == ["registered", "lost", "refused"]
    assert str(RegistrationState.REFUSED) == "refused" == RegistrationState.REFUSED
