"""``server-timing``: a ``Server-Timing`` response header (W3C Server Timing) on every response
a connector made, so a browser's developer tools show where the time went::

    Server-Timing: socket;dur=0.2, connector;dur=11.9
    Server-Timing: total;dur=12.3

* ``socket``: how long the request waited for an idle connector socket;
* ``connector``: from the head going to the connector to its response head arriving
  (approximated as the time until the response head, less the socket wait), which is the
  connector, its target and the network between;
* ``total``: from the request head being read to the response head going out.

Milliseconds, one decimal. The target's own ``Server-Timing`` lines are kept; these are added
after them (two lines, as the first two are known before the other listeners have run; a client
reads them as one list). Responses the router makes itself (404, 503, a listener's ``Reject``)
have none. No options.
"""
from __future__ import annotations

from ..hooks import Headers, ProxyInfo, ProxyListener

HEADER = "Server-Timing"


class ServerTiming(ProxyListener):
    """Adds ``Server-Timing`` with ``socket``, ``connector`` and ``total`` (see the module)."""

    def on_after_target_headers_received(self, info: ProxyInfo, status: int,
                                         headers: Headers) -> int | None:
        socket_wait = info.socket_wait
        connector = max(0.0, info.duration - socket_wait)
        headers.add(HEADER, f"socket;dur={socket_wait * 1000:.1f}, "
                            f"connector;dur={connector * 1000:.1f}")
        return None

    def on_before_responding_to_client(self, info: ProxyInfo) -> None:
        if info.response_headers is not None:
            info.response_headers.add(HEADER, f"total;dur={info.duration * 1000:.1f}")

    def __repr__(self) -> str:
        return "ServerTiming()"
