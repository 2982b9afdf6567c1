"""Deterministic payloads and their digests: a client and a target that agree on a seed agree
on every byte, so bodies can be checked end to end without keeping them."""

from __future__ import annotations

import hashlib
import random


def deterministic_bytes(size: int, seed: int = 0) -> bytes:
    """``size`` pseudo-random bytes, the same for the same seed (client and target agree)."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
