"""How large a websocket message crank_sync may send a peer.

Peers cap the messages they accept: crank4go's connector closes with 1009 above 16 KiB, the
Go and JavaScript connectors in use above 32 KiB. So crank_sync sends no message over
:data:`DEFAULT_MESSAGE_LIMIT` unless the peer said it takes more. A crank_sync end says so in
the registration handshake, the connector in its upgrade request and the router in its 101
answer, with the header :data:`MESSAGE_LIMIT_HEADER` (the largest message it accepts, in
bytes); other peers ignore the header, and a peer that sends none gets 16 KiB messages.
"""
from __future__ import annotations

#: The largest message sent to a peer that did not announce a limit.
DEFAULT_MESSAGE_LIMIT = 16 * 1024
#: Announced limits are clamped to this range: below the default a v1 peer could not carry
#: even a modest request head; above 16 MiB a single message would hold too much memory.
MIN_MESSAGE_LIMIT = DEFAULT_MESSAGE_LIMIT
MAX_MESSAGE_LIMIT = 16 * 1024 * 1024
MESSAGE_LIMIT_HEADER = "CrankSync-Max-Message"
#: A v3 message is its payload plus this many bytes (type, flags, stream id).
V3_OVERHEAD = 6


def peer_message_limit(announced: str | None) -> int:
    """The largest message to send a peer, from the value of its ``MESSAGE_LIMIT_HEADER``
    (None or anything but a decimal number: the default)."""
    value = (announced or "").strip()
    if not value.isdigit() or len(value) > 12:
        return DEFAULT_MESSAGE_LIMIT
    return max(MIN_MESSAGE_LIMIT, min(int(value), MAX_MESSAGE_LIMIT))


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (``[data]`` when it fits)."""
    if len(data) <= size:
        return [data]
    view = memoryview(data)
    return [bytes(view[i:i + size]) for i in range(0, len(data), size)]
