"""Time to prune the trigger ledger (issue 13, point 3: "events and logs that grow without bound go
in tables that retention can prune cheaply").

Fills a fresh store's ``trigger_firings`` with ``--rows`` old rows of a schedule trigger (default
1,000,000, by one ``INSERT ... SELECT generate_series`` on PostgreSQL, ``executemany`` on SQLite)
plus ``--keep`` recent ones, then times ``Store.prune_trigger_firings`` (batched deletes by the
``(trigger, recorded_at)`` index, ``--batch`` rows per transaction) and checks that exactly the old
rows went.  With ``--single`` it also times the same delete as ONE statement on a second fill, for
comparison (what a prune without batches would hold: one long transaction).

Run:  PYTHONPATH=src python bench/prune_bench.py --postgres postgresql://user@host:port/db
        [--rows 1000000] [--keep 100000] [--batch 10000] [--single]
      PYTHONPATH=src python bench/prune_bench.py --sqlite [--rows ...]
(``--postgres`` makes a new schema in that database and drops it afterwards.)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from skyweave.model.triggers import TriggerKind, TriggerSpec
from skyweave.store import open_store
from skyweave.store.base import Store
from skyweave.store.schema import trigger_firings

DAY = 86_400.0
NOW = time.time()
SPEC = TriggerSpec(name="nightly", kind=TriggerKind.SCHEDULE, workflow="w.py:w", source={"cron": "* * * * *"})


def fill(store: Store, engine: Any, rows: int, keep: int, offset: int = 0) -> float:
    """Insert ``rows`` rows recorded 200 days ago and ``keep`` recorded now; returns seconds."""
    started = time.perf_counter()
    old, new = NOW - 200 * DAY, NOW
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for first, count, at in ((offset, rows, old), (offset + rows, keep, new)):
                conn.execute(text(
                    "INSERT INTO trigger_firings (trigger, key, state, at, recorded_at, fields, reason) "
                    "SELECT 'nightly', 'tick-' || g, 'fired', CAST(:at AS float8), CAST(:at AS float8), "
                    "'{}', '' "
                    "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g"),
                    {"at": at, "first": first, "last": first + count - 1})
            conn.execute(text("ANALYZE trigger_firings"))
        else:
            for first, count, at in ((offset, rows, old), (offset + rows, keep, new)):
                if not count:
                    continue
                conn.execute(trigger_firings.insert(), [
                    {"trigger": "nightly", "key": f"tick-{g}", "state": "fired", "at": at, "recorded_at": at,
                     "fields": "{}", "reason": ""} for g in range(first, first + count)])
    return time.perf_counter() - started


def count(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM trigger_firings")).scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--postgres", help="an existing database URL (a schema is made and dropped)")
    where.add_argument("--sqlite", action="store_true", help="a SQLite store in a temporary directory")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--single", action="store_true", help="also time one unbatched DELETE")
    args = parser.parse_args()

    schema = f"prune_{secrets.token_hex(4)}"
    tmp = tempfile.TemporaryDirectory()
    if args.postgres:
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
        store_url = url.render_as_string(hide_password=False)
    else:
        store_url = str(Path(tmp.name) / "store")
    store = open_store(store_url)
    engine = store._writer  # type: ignore[attr-defined]  # the bench fills the table directly
    try:
        store.save_trigger(SPEC)
        result: dict[str, Any] = {"backend": "postgresql" if args.postgres else "sqlite", "rows": args.rows,
                                  "keep": args.keep, "batch": args.batch, "load": os.getloadavg()[0]}
        result["fill_s"] = round(fill(store, engine, args.rows, args.keep), 2)
        started = time.perf_counter()
        pruned = store.prune_trigger_firings(NOW - 90 * DAY, batch=args.batch)
        result["prune_s"] = round(time.perf_counter() - started, 2)
        assert pruned == {"nightly": args.rows}, pruned
        assert count(engine) == args.keep
        if args.single:
            fill(store, engine, args.rows, 0, offset=args.rows + args.keep)
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(delete(trigger_firings).where(trigger_firings.c.recorded_at < NOW - 90 * DAY))
            result["single_delete_s"] = round(time.perf_counter() - started, 2)
        result["load_after"] = os.getloadavg()[0]
        print(json.dumps(result))
    finally:
        store.close()
        if args.postgres:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        tmp.cleanup()


if __name__ == "__main__":
    main()
