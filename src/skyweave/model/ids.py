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


class IdMint:
    """Identifiers for a pure core: a function of the time it is given and of its own seed and
    count, so it reads no clock and no random source (``Controller`` makes its ids with one).

    Same form as ``new_id`` (10 chars of time from ``now``, 10 others): the others are the
    ``n``-th value of a bijection of 50-bit counters keyed by ``seed``, so one mint never repeats
    an id (for 2**50 ids) and mints of different seeds collide no more often than random ids.
    The same seed, the same calls and the same times give the same ids.
    """

    _MASK = (1 << 50) - 1
    _MUL = 0x2545F4914F6CD  # odd: multiplication is a bijection modulo 2**50

    def __init__(self, seed: int) -> None:
        self.seed = seed & self._MASK
        self._count = 0

    @classmethod
    def random(cls) -> IdMint:
        """A mint with a random seed (for a new controller: its ids differ from every other's)."""
        return cls(_rng().getrandbits(50))

    def new(self, prefix: str, now: float) -> str:
        self._count += 1
        tail = ((self._count * self._MUL) ^ self.seed) & self._MASK
        tail = (tail * self._MUL + self.seed) & self._MASK
        return f"{prefix}-{_b32(int(now * 1000), 10)}{_b32(tail, 10)}"


RUN = "run"
ACTIVITY = "act"
PRODUCT = "prd"
EVENT = "evt"
WORKER = "wrk"
