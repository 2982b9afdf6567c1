"""Websocket masking (RFC 6455 section 5.3): XOR with a 4-byte key, as fast as is installed.

Every frame a connector sends is masked, and the router unmasks it: on a bulk transfer this
XOR is the hottest loop of both processes. Per 64 KiB on the development machine:

* numpy (the ``crank_sync[speed]`` extra), 32-bit words: about 3.5 us;
* Python's big integers: about 63 us (wsaccel's compiled byte loop, for comparison: 27 us);
* per 2 KiB, numpy 3.0 us and big integers 4.3 us; per 1 KiB, 2.9 and 2.6 us.

:func:`xor_mask` uses numpy when it is installed, and big integers for payloads under 1,536 bytes
(where numpy's fixed cost dominates) or without numpy. Importing numpy costs the process about
11 MiB of memory and some 50 ms with the GIL held, which stalls every thread: a router or
connector imports it as it starts (:func:`preload`), never in the middle of its traffic.
"""
from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["implementation", "preload", "xor_mask"]

#: Below this many bytes the fixed cost of numpy outweighs its speed (measured above): a small
#: request or response (a 1 KiB body and its head) is masked with big integers.
_SMALL = 1536


def _rotate(key: bytes, offset: int) -> bytes:
    shift = offset & 3
    return key[shift:] + key[:shift] if shift else key


def _xor_int(key: bytes, data: bytes | bytearray | memoryview, offset: int = 0) -> bytes:
    """The pure-Python XOR: one big-integer operation over the whole payload."""
    n = len(data)
    if not n:
        return b""
    key = _rotate(key, offset)
    full = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(full, "little")).to_bytes(n, "little")


_numpy: Any = None  # the numpy module once imported; False when it is not installed


def _load_numpy() -> Any:
    global _numpy
    if _numpy is None:
        try:
            import numpy
        except ImportError:  # pragma: no cover - depends on the extras installed
            _numpy = False
        else:
            _numpy = numpy
    return _numpy


def preload() -> bool:
    """Import numpy now, when it is installed (a router or connector calls this as it starts);
    True when large payloads will be masked with it."""
    return _load_numpy() is not False


def implementation() -> str:
    """``"numpy"`` or ``"python"``: what masks large payloads in this process."""
    return "numpy" if importlib.util.find_spec("numpy") is not None else "python"


def xor_mask(key: bytes, data: bytes | bytearray | memoryview, offset: int = 0) -> bytes:
    """``data`` XOR the 4-byte ``key``, the key starting at byte ``offset`` of its cycle (for a
    payload masked in pieces)."""
    n = len(data)
    np: Any = _load_numpy() if n >= _SMALL else False
    if np is False:
        return _xor_int(key, data, offset)
    key = _rotate(key, offset)
    words = n >> 2
    out = np.empty(n, dtype=np.uint8)
    np.bitwise_xor(np.frombuffer(data, dtype=np.uint32, count=words),
                   np.frombuffer(key, dtype=np.uint32)[0],
                   out=out[:words * 4].view(np.uint32))
    for i in range(words * 4, n):
        out[i] = data[i] ^ key[i & 3]
    return out.tobytes()  # type: ignore[no-any-return]
