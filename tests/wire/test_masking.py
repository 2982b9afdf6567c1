"""Websocket masking: ``crank_sync.ws.masking``.

Every result is compared with a byte-at-a-time reference written here (RFC 6455 section 5.3:
byte ``i`` XOR ``key[(i + offset) % 4]``), over sizes on both sides of the numpy threshold
(1,536 bytes) and of every word boundary, all four key offsets and the three buffer types the
router and connector pass in. The numpy path and the big-integer path (``_xor_int``) are also
checked against each other, and the pure path is forced by making numpy look absent.
"""
from __future__ import annotations

import functools
import importlib.util
import random
import subprocess
import sys

import pytest

from crank_sync.ws import masking
from crank_sync.ws.masking import _xor_int, implementation, xor_mask

SIZES = [0, 1, 2, 3, 4, 5, 511, 512, 513, 1535, 1536, 1537, 4096, 65535, 65536, 65539, 1_000_003]
OFFSETS = [0, 1, 2, 3]
KEYS = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x12\x34\x56\x78", b"\xa5\x00\x5a\xff"]
BUFFER_TYPES = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
}
HAVE_NUMPY = importlib.util.find_spec("numpy") is not None


def reference_mask(key: bytes, data: bytes, offset: int = 0) -> bytes:
    return bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))


@functools.cache
def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@functools.cache
def expected(key: bytes, size: int, offset: int) -> bytes:
    return reference_mask(key, payload(size), offset)


def key_for(size: int, offset: int) -> bytes:
    """A key that differs per case, so a wrong rotation cannot go unnoticed."""
    return random.Random(size * 7 + offset).randbytes(4)


@pytest.fixture
def pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make xor_mask behave as if numpy were not installed."""
    monkeypatch.setattr(masking, "_numpy", False)


@pytest.mark.parametrize("kind", list(BUFFER_TYPES))
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("size", SIZES)
def test_xor_mask_matches_reference(size: int, offset: int, kind: str) -> None:
    key = key_for(size, offset)
    data = BUFFER_TYPES[kind](payload(size))
    result = xor_mask(key, data, offset)
    assert type(result) is bytes
    assert len(result) == size
    assert result == expected(key, size, offset)


@pytest.mark.parametrize("kind", list(BUFFER_TYPES))
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("size", SIZES)
def test_pure_python_path_matches_reference(pure_python: None, size: int, offset: int,
                                            kind: str) -> None:
    key = key_for(size, offset)
    data = BUFFER_TYPES[kind](payload(size))
    assert xor_mask(key, data, offset) == expected(key, size, offset)
    assert _xor_int(key, data, offset) == expected(key, size, offset)


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("size", SIZES)
def test_masking_twice_gives_the_data_back(size: int, offset: int) -> None:
    key = key_for(size, offset)
    data = payload(size)
    once = xor_mask(key, data, offset)
    if size >= 4:
        assert once != data or key == b"\x00\x00\x00\x00"
    assert xor_mask(key, once, offset) == data


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.hex())
def test_special_keys(key: bytes) -> None:
    data = payload(4099)
    for offset in OFFSETS:
        assert xor_mask(key, data, offset) == reference_mask(key, data, offset)
    assert xor_mask(b"\x00\x00\x00\x00", data) == data
    assert xor_mask(b"\xff\xff\xff\xff", data) == bytes(255 - b for b in data)


def test_offsets_compose_for_a_payload_masked_in_pieces() -> None:
    """Masking a payload in pieces, each piece starting where the last ended in the key
    cycle, gives the same bytes as masking it at once (both sides of the numpy threshold)."""
    key = b"\x01\x82\x43\xc4"
    data = payload(70001)
    whole = xor_mask(key, data)
    rng = random.Random(3)
    pieces = []
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 3, 7, 511, 512, 513, 1535, 1536, 1537, 4097])
        pieces.append(xor_mask(key, memoryview(data)[pos:pos + n], pos))
        pos += n
    assert b"".join(pieces) == whole == reference_mask(key, data)


def test_unaligned_memoryview_slice() -> None:
    """A memoryview starting at an odd address inside a bigger buffer (as the router's
    receive buffer hands payloads over) is read correctly."""
    buf = bytearray(payload(10_003))
    key = b"\x9a\xbc\xde\xf0"
    for start in range(4):
        view = memoryview(buf)[start + 1:start + 1 + 9000]
        assert xor_mask(key, view) == reference_mask(key, bytes(view))
        view.release()


@pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed: no numpy path to compare")
@pytest.mark.parametrize("size", [1536, 1537, 1538, 1539, 1540, 4096, 65539, 1_000_003])
def test_numpy_path_and_big_integer_path_agree(monkeypatch: pytest.MonkeyPatch,
                                               size: int) -> None:
    data = payload(size)
    for offset in OFFSETS:
        key = key_for(size, offset)
        monkeypatch.setattr(masking, "_numpy", None)  # load numpy on demand, as in production
        with_numpy = xor_mask(key, data, offset)
        assert masking._numpy is not False and masking._numpy is not None, "numpy not used"
        monkeypatch.setattr(masking, "_numpy", False)
        pure = xor_mask(key, data, offset)
        assert with_numpy == pure == _xor_int(key, data, offset)


def test_implementation_reports_what_is_installed() -> None:
    assert implementation() in ("numpy", "python")
    assert implementation() == ("numpy" if HAVE_NUMPY else "python")


def test_without_numpy_everything_uses_the_pure_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """With numpy unimportable, implementation() says "python" and large payloads are still
    masked correctly (numpy's import is attempted once and remembered as absent)."""
    monkeypatch.setitem(sys.modules, "numpy", None)  # "import numpy" raises ImportError
    monkeypatch.setattr(masking, "_numpy", None)
    assert implementation() == "python"
    key = b"\x11\x22\x33\x44"
    data = payload(65539)
    assert xor_mask(key, data, 2) == expected(key, 65539, 2)
    assert masking._numpy is False


def test_small_payloads_do_not_import_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the threshold numpy is never loaded (it costs the process memory)."""
    monkeypatch.setattr(masking, "_numpy", None)
    key = b"\x01\x02\x03\x04"
    assert xor_mask(key, payload(511), 1) == expected(key, 511, 1)
    assert masking._numpy is None


@pytest.mark.skipif(not HAVE_NUMPY, reason="numpy is not installed: nothing to preload")
@pytest.mark.parametrize("side", ["router", "connector"])
def test_numpy_is_imported_as_a_router_or_connector_starts(side: str) -> None:
    """Importing numpy holds the GIL for tens of milliseconds: that happens at start, not at
    the first large frame in the middle of the traffic (where it stalled every thread)."""
    start = {
        "router": "r = crank_sync.Router(crank_sync.RouterConfig(host='127.0.0.1', "
                  "http_port=0, registration_port=0)).start(); r.stop()",
        "connector": "c = crank_sync.Connector(target='http://127.0.0.1:9', route='r', "
                     "routers=['ws://127.0.0.1:9']).start(); c.stop(timeout=1)",
    }[side]
    code = ("import sys, crank_sync; before = 'numpy' in sys.modules; " + start
            + "; print(before, 'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.split() == ["False", "True"]
