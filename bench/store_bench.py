"""Store write throughput: activity upserts per second, JSON encoding included.

Applies 100,000 activities to a fresh SQLite store in changesets of 256 (as the controller
batches its decisions), first as new rows, then again as updates of the same rows (queued ->
succeeded with a result), and prints rows/s for each pass.  Not a test: numbers depend on the
machine.  Run:  PYTHONPATH=src python bench/store_bench.py [--rows N] [--batch B] [--store DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msgspec

from skyweave.model.ids import ACTIVITY, RUN, new_id
from skyweave.model.records import ActivityRecord, Changeset, RunRecord
from skyweave.store import open_store


def make_activities(run_id: str, count: int, now: float) -> list[ActivityRecord]:
    """Activities shaped like a fan-out's: a few arguments, a key, a code hash."""
    return [
        ActivityRecord(
            id=new_id(ACTIVITY), run_id=run_id, node="detect_sources", task_name="detect_sources",
            task_version="1.2.0", state="queued", key=str(i), code_hash="c0ffee" * 10, priority=5,
            arguments={"image": f"prd-{i:020d}", "threshold": 5.0, "detector": f"cmos{i % 4}"},
            max_attempts=3, created_at=now, queued_at=now, aspects=["provenance", "timing"],
        )
        for i in range(count)
    ]


def apply_in_batches(store_dir: Path, records: list[ActivityRecord], batch: int) -> float:
    store = open_store(str(store_dir))
    try:
        started = time.perf_counter()
        for i in range(0, len(records), batch):
            store.apply(Changeset(activities=records[i:i + batch]))
        return time.perf_counter() - started
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--store", type=Path, default=None, help="store directory (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = args.store or Path(tmp) / "store"
        now = time.time()
        run_id = new_id(RUN)
        store = open_store(str(store_dir))
        store.apply(Changeset(runs=[RunRecord(id=run_id, workflow="bench", state="running", created_at=now)]))
        store.close()

        records = make_activities(run_id, args.rows, now)
        inserted = apply_in_batches(store_dir, records, args.batch)
        result = {"sources": 3, "flux": [1.5, 2.5]}
        finished = [msgspec.structs.replace(a, state="succeeded", result=result, ended_at=now, attempt=1)
                    for a in records]
        updated = apply_in_batches(store_dir, finished, args.batch)

    print(f"{args.rows} activities in batches of {args.batch}")
    print(f"  insert: {args.rows / inserted:10,.0f} rows/s  ({inserted:.2f} s)")
    print(f"  update: {args.rows / updated:10,.0f} rows/s  ({updated:.2f} s)")


if __name__ == "__main__":
    main()
