"""crank_sync/plugins/header_auth.py on its own: where tokens come from, which header and scheme
are read, which requests are checked, and what a refusal says. Driven with a stand-in of what
the router gives a listener (the router's side: tests/e2e/test_plugins.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from crank_sync import Headers, Reject
from crank_sync.plugins import HeaderAuth


def check(auth: HeaderAuth, headers: list[tuple[str, str]], route: str = "svc",
          target: str = "/svc/x") -> int:
    """200 when the request passes, else the status it is refused with."""
    try:
        auth.on_before_proxy_to_target(SimpleNamespace(route=route, target=target),
                                       Headers(headers))
    except Reject as rej:
        assert rej.status == 401 and rej.body == b"unauthorized\n"
        return rej.status
    return 200


def test_bearer_tokens_from_the_environment(monkeypatch):
    monkeypatch.setenv("CRANK_AUTH_TOKENS", " one,two  three ")
    auth = HeaderAuth()
    for token in ("one", "two", "three"):
        assert check(auth, [("Authorization", f"Bearer {token}")]) == 200
        assert check(auth, [("authorization", f"bearer   {token} ")]) == 200
    for value in ("Bearer", "Bearer ", "one", "Basic one", "Bearer one two", "Bearer on"):
        assert check(auth, [("Authorization", value)]) == 401, value
    assert check(auth, []) == 401
    # two credentials are one too many
    assert check(auth, [("Authorization", "Bearer one"), ("Authorization", "Bearer one")]) == 401


def test_a_header_of_its_own_from_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CRANK_AUTH_TOKENS", raising=False)
    keys = tmp_path / "keys"
    keys.write_text("# comment\n\n  k1  \n#k2\nk3\n")
    auth = HeaderAuth(header="X-Api-Key", token_file=str(keys))
    assert check(auth, [("X-Api-Key", "k1")]) == 200
    assert check(auth, [("x-api-key", "k3")]) == 200
    assert check(auth, [("X-Api-Key", "k2")]) == 401
    assert check(auth, [("X-Api-Key", "#k2")]) == 401
    assert check(auth, [("Authorization", "Bearer k1")]) == 401
    with pytest.raises(Reject) as caught:
        auth.on_before_proxy_to_target(SimpleNamespace(route="svc", target="/"), Headers())
    assert caught.value.headers == [("WWW-Authenticate",
                                     'ApiKey realm="crank_sync", header="X-Api-Key"')]


def test_another_variable_a_scheme_and_a_realm(monkeypatch):
    monkeypatch.setenv("MY_KEYS", "s3")
    auth = HeaderAuth(tokens_env="MY_KEYS", scheme="Token", realm="inside")
    assert check(auth, [("Authorization", "Token s3")]) == 200
    assert check(auth, [("Authorization", "Bearer s3")]) == 401
    assert auth.challenge == 'Token realm="inside"'
    raw = HeaderAuth(tokens_env="MY_KEYS", scheme="")
    assert check(raw, [("Authorization", "s3")]) == 200


def test_only_some_routes(monkeypatch):
    monkeypatch.setenv("CRANK_AUTH_TOKENS", "t")
    auth = HeaderAuth(routes="api|admin/v2")
    assert auth.routes == {"api", "admin/v2"}
    assert check(auth, [], route="pub", target="/pub/x") == 200
    assert check(auth, [], route="api", target="/api/x") == 401
    # headed for the catch-all, but a path under a checked route
    assert check(auth, [], route="*", target="/api") == 401
    assert check(auth, [], route="*", target="/api?x=1") == 401
    assert check(auth, [], route="*", target="/admin/v2/users") == 401
    assert check(auth, [], route="*", target="/apix/y") == 200
    assert check(auth, [], route="*", target="/admin/v3") == 200
    everything_else = HeaderAuth(routes=["*"])
    assert check(everything_else, [], route="*", target="/a") == 401
    assert check(everything_else, [], route="svc", target="/svc") == 200


def test_refuses_to_start_without_tokens_or_with_tokens_in_the_spec(tmp_path, monkeypatch):
    monkeypatch.delenv("CRANK_AUTH_TOKENS", raising=False)
    with pytest.raises(ValueError, match="^no tokens: set CRANK_AUTH_TOKENS"):
        HeaderAuth()
    (tmp_path / "empty").write_text("# none yet\n")
    with pytest.raises(ValueError, match="^no tokens"):
        HeaderAuth(token_file=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="^cannot read token_file .*missing"):
        HeaderAuth(token_file=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="tokens do not go in the plugin spec"):
        HeaderAuth(tokens="abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a header name"):
        HeaderAuth(tokens=["t"], header="X Api")
    with pytest.raises(ValueError, match="realm"):
        HeaderAuth(tokens=["t"], realm='a"b')


def test_the_tokens_are_never_shown():
    auth = HeaderAuth(tokens=["very-secret"])
    assert "very-secret" not in repr(auth) and "tokens=1" in repr(auth)
