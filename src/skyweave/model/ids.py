"""Sortable, prefixed identifiers: ``run-01J...``, ``act-...``, ``prd-...``.

Time-ordered (millisecond timestamp first, Crockford base32) so that ids sort by creation, which
keeps B-tree inserts append-mostly in SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new identifier such as ``act-01jd8x3k2m9q7v5r4t6w``: 10 chars of time, 10 of randomness."""
    ms = time.time_ns() // 1_000_000
    rnd = int.from_bytes(os.urandom(7), "big")
    return f"{prefix}-{_b32(ms, 10)}{_b32(rnd, 10)}"


RUN = "run"
ACTIVITY = "act"
PRODUCT = "prd"
EVENT = "evt"
WORKER = "wrk"
