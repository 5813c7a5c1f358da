"""Sortable, prefixed identifiers: ``run-01J...``, ``act-...``, ``prd-...``.

Time-ordered (millisecond timestamp first, Crockford base32) so that ids sort by creation, which
keeps B-tree inserts append-mostly in SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_local = threading.local()


def _rng() -> random.Random:
    # os.urandom costs ~10 us a call here; ids need uniqueness, not secrecy: seed a fast generator
    # once per thread (and again after a fork, since the pid changes)
    rng: random.Random | None = getattr(_local, "rng", None)
    if rng is None or getattr(_local, "pid", None) != os.getpid():
        rng = _local.rng = random.Random(os.urandom(16))
        _local.pid = os.getpid()
    return rng


def new_id(prefix: str) -> str:
    """A new identifier such as ``act-01jd8x3k2m9q7v5r4t6w``: 10 chars of time, 10 of randomness."""
    ms = time.time_ns() // 1_000_000
    return f"{prefix}-{_b32(ms, 10)}{_b32(_rng().getrandbits(50), 10)}"


RUN = "run"
ACTIVITY = "act"
PRODUCT = "prd"
EVENT = "evt"
WORKER = "wrk"
