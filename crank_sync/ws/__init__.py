"""One websocket layer for the router and the connector (RFC 6455).

* :mod:`.frames`: :class:`Opcode`, the frame head, :func:`encode_frame` (masked or not) and
  the sans-IO :class:`FrameDecoder` (its role decides whether frames must be masked);
* :mod:`.masking`: the XOR of masking, with numpy as the fast path;
* :mod:`.handshake`: the server's 101 answer and the client's upgrade;
* :mod:`.tls`: reading a socket other threads write to (:class:`LockedSocket`);
* :mod:`.connection`: the blocking server-side connection the router holds (the connector's
  end is websocket-client's, in :mod:`crank_sync.connector.websocket`);
* :mod:`.ping`: when a silent peer is given up.
"""
from __future__ import annotations

from .frames import FrameDecoder, FrameError, Opcode, Role, encode_frame, mask_keys
from .ping import silent_too_long
from .tls import LockedSocket, recv_locked, recv_nowait

__all__ = ["FrameDecoder", "FrameError", "LockedSocket", "Opcode", "Role", "encode_frame",
           "mask_keys", "recv_locked", "recv_nowait", "silent_too_long"]
