"""``header-auth``: answer 401 (with ``WWW-Authenticate``) unless a request header holds one of
the configured tokens; nothing of a refused request reaches a connector.

Options (all strings, as a plugin spec gives them):

* ``header``: the header to read (default ``Authorization``);
* ``scheme``: the word before the token (default ``Bearer`` for ``Authorization``, none for
  any other header: ``header=X-Api-Key`` takes the whole value as the token);
* ``token_file``: a file of tokens, one per line (blank lines and lines starting with ``#``
  ignored);
* ``tokens_env``: the environment variable holding tokens, separated by commas or spaces
  (default ``CRANK_AUTH_TOKENS``); both sources add up;
* ``routes``: check only requests for these routes, separated by ``|`` (``routes=api|admin``;
  ``*`` is the catch-all); a request counts as one for ``api`` when it goes to route ``api`` or
  its path is ``/api`` or under ``/api/``, so one that falls through to the catch-all is
  checked too. Default: every request;
* ``realm``: the realm of the challenge (default ``crank_sync``).

No token configured: the plugin refuses to start. Tokens never go in the spec itself (a
command line and ``--print-config`` show it): from Python, ``HeaderAuth(tokens=[...])``.
Tokens are compared with :func:`hmac.compare_digest`, each of them, whichever matches.
"""
from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable

from ..hooks import Headers, ProxyInfo, ProxyListener, Reject

#: Where tokens come from when ``tokens_env`` is not given.
TOKENS_ENV = "CRANK_AUTH_TOKENS"

_REALM_RE = re.compile(r'^[^"\\\x00-\x1f\x7f]*$')


class HeaderAuth(ProxyListener):
    """Rejects requests without a configured token in ``header`` (see the module doc)."""

    def __init__(self, header: str = "Authorization", scheme: str | None = None,
                 token_file: str | None = None, tokens_env: str = TOKENS_ENV,
                 routes: str | Iterable[str] = (), realm: str = "crank_sync",
                 tokens: Iterable[str] | None = None) -> None:
        if isinstance(tokens, str):
            raise ValueError("tokens do not go in the plugin spec (a command line "
                             f"and --print-config show it): set {TOKENS_ENV} or give "
                             "token_file=PATH")
        if not header or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", header):
            raise ValueError(f"header={header!r} is not a header name")
        if not _REALM_RE.match(realm):
            raise ValueError(f"realm={realm!r} may not hold quotes or controls")
        self.header = header
        if scheme is None:
            scheme = "Bearer" if header.lower() == "authorization" else ""
        self.scheme = scheme.strip()
        found = [*(tokens or ()), *_from_env(tokens_env), *_from_file(token_file)]
        self._tokens = tuple(dict.fromkeys(_bytes(t) for t in found if t))
        if not self._tokens:
            raise ValueError(f"no tokens: set {tokens_env} (separated by commas "
                             f"or spaces) or give token_file=PATH (one per line)")
        names = routes.split("|") if isinstance(routes, str) else routes
        self.routes = frozenset(r.strip() for r in names if r.strip())
        self._prefixes = tuple("/" + r for r in self.routes if r != "*")
        if self.scheme:
            self.challenge = f'{self.scheme} realm="{realm}"'
        else:
            self.challenge = f'ApiKey realm="{realm}", header="{header}"'

    def on_before_proxy_to_target(self, info: ProxyInfo, headers: Headers) -> None:
        if self.routes and not self._covers(info.route, info.target):
            return
        values = headers.get_all(self.header)
        if len(values) != 1 or not self._matches(self._token(values[0])):
            raise Reject(401, "unauthorized\n", {"WWW-Authenticate": self.challenge})

    def _covers(self, route: str, target: str) -> bool:
        if route in self.routes:
            return True
        path = target.split("?", 1)[0]
        return any(path == p or path.startswith(p + "/") for p in self._prefixes)

    def _token(self, value: str) -> bytes:
        value = value.strip()
        if self.scheme:
            scheme, _, rest = value.partition(" ")
            if scheme.lower() != self.scheme.lower():
                return b""
            value = rest.strip()
        return _bytes(value)

    def _matches(self, presented: bytes) -> bool:
        if not presented:
            return False
        ok = False
        for token in self._tokens:  # every one, whichever matches
            ok |= hmac.compare_digest(presented, token)
        return ok

    def __repr__(self) -> str:  # never the tokens
        return (f"HeaderAuth(header={self.header!r}, tokens={len(self._tokens)}, "
                f"routes={sorted(self.routes) or 'all'})")


def _bytes(text: str) -> bytes:
    return text.strip().encode("utf-8", "backslashreplace")


def _from_env(name: str) -> list[str]:
    return (os.environ.get(name) or "").replace(",", " ").split() if name else []


def _from_file(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ValueError(f"cannot read token_file {path!r}: {reason}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
