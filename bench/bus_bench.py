"""Throughput of the bus backends: ``PYTHONPATH=src python bench/bus_bench.py [N] [--redis URL]``.

``--redis URL`` adds the Redis bus (under a key prefix of its own, deleted after).

Per backend: enqueue N dispatches in batches of 256, claim them in batches of 64 and ack each
batch; publish N events in batches of 256, read them in batches of 64 and commit each batch.
Prints messages per second for each phase (one process, no contention).
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from skyweave.bus import CONTROLLER_GROUP, Bus, MemoryBus, SQLiteBus

PAYLOAD = b'{"v":1,"id":"x","body":{"type":"dispatch","activity_id":"act-0000000000"}}' + b" " * 200
PUBLISH_BATCH = 256
CONSUME_BATCH = 64


def timed(label: str, n: int, work: Callable[[], None]) -> None:
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    print(f"  {label:<28} {n / elapsed:>12,.0f} msgs/s  ({elapsed:.2f} s)")


def bench(bus: Bus, n: int) -> None:
    print(f"{bus!r}, {n:,} messages")

    def enqueue() -> None:
        for start in range(0, n, PUBLISH_BATCH):
            stop = min(start + PUBLISH_BATCH, n)
            bus.enqueue([(f"d{i}", i % 4, PAYLOAD) for i in range(start, stop)])

    def claim_and_ack() -> None:
        done = 0
        while claimed := bus.claim("bench", CONSUME_BATCH, 60.0):
            bus.ack([c.id for c in claimed])
            done += len(claimed)
        assert done == n, done

    def publish() -> None:
        for start in range(0, n, PUBLISH_BATCH):
            bus.publish([PAYLOAD] * min(PUBLISH_BATCH, n - start))

    def read_and_commit() -> None:
        done = 0
        while delivered := bus.read(CONTROLLER_GROUP, CONSUME_BATCH):
            bus.commit(CONTROLLER_GROUP, delivered[-1].offset)
            done += len(delivered)
        assert done == n, done

    timed("enqueue (x256)", n, enqueue)
    timed("claim + ack (x64)", n, claim_and_ack)
    timed("publish (x256)", n, publish)
    timed("read + commit (x64)", n, read_and_commit)


def main() -> None:
    args = sys.argv[1:]
    redis_url = None
    if "--redis" in args:
        at = args.index("--redis")
        redis_url = args[at + 1]
        del args[at : at + 2]
    n = int(args[0]) if args else 100_000
    bench(MemoryBus(), n)
    with tempfile.TemporaryDirectory() as tmp:
        bus = SQLiteBus(Path(tmp) / "bus.db")
        try:
            bench(bus, n)
        finally:
            bus.close()
    if redis_url:
        from skyweave.bus.redis import RedisBus

        redis_bus = RedisBus(redis_url, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        try:
            bench(redis_bus, n)
        finally:
            redis_bus.purge()
            redis_bus.close()


if __name__ == "__main__":
    main()
