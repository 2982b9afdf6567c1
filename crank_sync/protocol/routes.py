"""Route names and how a request finds its route.

A route is ``*`` (the catch-all, asked for explicitly) or one or more ``/``-separated segments
of ``[A-Za-z0-9_.-]``, none empty, none ``.`` or ``..`` and none ending in a dot: a target that
normalises paths would otherwise serve another route's path, and a name such as ``hello.``
is one that a DNS-minded peer or a normalising proxy treats as ``hello``.

Two resolvers find the route of a request target:

* ``first-segment`` (the default, what every Cranker router does): the first path segment;
  a route with a ``/`` in it can never match, so its registration is refused;
* ``longest-prefix``: the longest registered route that is a whole-segment prefix of the path
  (``a/b`` before ``a`` for ``/a/b/c``).

Pure functions: no I/O.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator

CATCH_ALL = "*"
RESOLVERS = ("first-segment", "longest-prefix")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def validate_route(route: str, *, empty_is_catch_all: bool = False) -> str:
    """The route, stripped; ValueError (one line, what to do) when it is not a valid name.

    ``empty_is_catch_all``: the registration handshake's rule (PROTOCOL.md: a missing or
    empty ``Route`` header means ``*``); where a user sets a route, empty is a mistake.
    """
    route = (route or "").strip()
    if route == CATCH_ALL:
        return route
    if not route:
        if empty_is_catch_all:
            return CATCH_ALL
        raise ValueError("the route is empty: give a name such as my-service, "
                         "or '*' for the catch-all")
    if ".." in route:  # PROTOCOL.md: no ".." anywhere in a route
        raise ValueError(f"invalid route {route!r}: '..' is not allowed in a route")
    for segment in route.split("/"):
        if not segment:
            raise ValueError(f"invalid route {route!r}: empty path segment "
                             "(no leading, trailing or double '/')")
        if not _SEGMENT_RE.match(segment):
            raise ValueError(f"invalid route {route!r}: use letters, digits and -_. "
                             "in '/'-separated segments, or '*' for the catch-all")
        if segment.endswith("."):
            raise ValueError(f"invalid route {route!r}: a segment may not be '.', '..' "
                             "or end in a dot")
    return route


def reachable(route: str, resolver: str) -> bool:
    """Can a request ever reach ``route`` under ``resolver``?"""
    return resolver == "longest-prefix" or route == CATCH_ALL or "/" not in route


def candidates(path: str, resolver: str) -> Iterator[str]:
    """Route names to look up for request ``path``, best first (the catch-all excluded)."""
    path = path.split("?", 1)[0].lstrip("/")
    if resolver != "longest-prefix":
        yield path.split("/", 1)[0]
        return
    segments = path.split("/")
    for end in range(len(segments), 0, -1):
        yield "/".join(segments[:end])


def resolve(path: str, resolver: str, known: Callable[[str], bool]) -> str | None:
    """The first candidate route of ``path`` for which ``known`` is true, else None."""
    return next((name for name in candidates(path, resolver) if name and known(name)), None)


def host_name(host: str) -> str:
    """A ``Host`` header value without its port, lower-cased (the key of a v3 Domain)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0]
