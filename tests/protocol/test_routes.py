"""Route names and resolvers (crank_sync/protocol/routes.py), as tables."""
from __future__ import annotations

import pytest

from crank_sync.protocol.routes import candidates, reachable, resolve, validate_route

VALID = ["svc", "my-service", "a_b", "v1.2", "a/b", "a/b/c", "A9", "*", " svc "]
INVALID = ["", ".", "..", "a..b", "hello.", "hello/.", "hello/..", "hello./world", "a//b", "/a", "a/",
           "a b", "a%2fb", "caf\u00e9", "a?b", "a#b", "**", "a*"]


@pytest.mark.parametrize("route", VALID)
def test_valid_routes(route):
    assert validate_route(route) == route.strip()


@pytest.mark.parametrize("route", INVALID)
def test_invalid_routes_are_refused_with_one_line(route):
    with pytest.raises(ValueError) as info:
        validate_route(route)
    assert "\n" not in str(info.value)


def test_an_empty_route_header_is_the_catch_all_on_the_wire_only():
    assert validate_route("", empty_is_catch_all=True) == "*"
    assert validate_route("  ", empty_is_catch_all=True) == "*"
    with pytest.raises(ValueError, match="empty"):
        validate_route("")
    with pytest.raises(ValueError):
        validate_route("..", empty_is_catch_all=True)


@pytest.mark.parametrize("route, resolver, ok", [
    ("a", "first-segment", True), ("a/b", "first-segment", False), ("*", "first-segment", True),
    ("a/b", "longest-prefix", True), ("a", "longest-prefix", True),
])
def test_reachable(route, resolver, ok):
    assert reachable(route, resolver) is ok


@pytest.mark.parametrize("path, resolver, expected", [
    ("/a/b/c", "first-segment", ["a"]),
    ("/a/b/c?x=/y", "longest-prefix", ["a/b/c", "a/b", "a"]),
    ("/a", "longest-prefix", ["a"]),
    ("/", "first-segment", [""]),
    ("/a/b?q", "first-segment", ["a"]),
])
def test_candidates(path, resolver, expected):
    assert list(candidates(path, resolver)) == expected


@pytest.mark.parametrize("path, resolver, known, expected", [
    ("/a/b/c", "longest-prefix", {"a", "a/b"}, "a/b"),
    ("/a/bc", "longest-prefix", {"a", "a/b"}, "a"),
    ("/a/b/c", "first-segment", {"a", "a/b"}, "a"),
    ("/x/y", "longest-prefix", {"a"}, None),
    ("/", "longest-prefix", {"a"}, None),
])
def test_resolve(path, resolver, known, expected):
    assert resolve(path, resolver, known.__contains__) == expected


@pytest.mark.parametrize(("host", "name"), [
    ("Example.COM", "example.com"),
    ("example.com:8080", "example.com"),
    (" a.example ", "a.example"),
    ("[::1]:443", "[::1]"),
    ("[::1]", "[::1]"),
])
def test_host_name(host: str, name: str) -> None:
    from crank_sync.protocol.routes import host_name

    assert host_name(host) == name
