"""Triggers at Einstein Probe scale (issue 16, point 4): N events -> exactly N runs, none missed,
none doubled; events/s sustained and event -> run-submitted latency (p50/p99).

Kinds (``--kinds``): ``files`` (files landing in one folder in bursts of ``--burst``, renamed into
place), ``messages`` (JSON messages posted on the store's SQLite bus), ``objects`` (objects put in
an S3 bucket; needs an S3 endpoint in ``AWS_ENDPOINT_URL``, e.g. moto's from
``scripts/services.sh start moto``, and any AWS_* credentials it accepts).  One trigger process (the
real ``TriggerService``) runs in a thread on an embedded store; the events arrive from another
thread as fast as they can be made.  The floor measured in the same run: the same workflow
submitted by a plain ``Client.submit`` loop (no ledger, no source) - the ratio says what exactly-once
costs.  Runs are only created (no controller executes them): what is measured is the trigger.

    .venv/bin/python bench/triggers_bench.py                       # 60,000 events of each kind
    .venv/bin/python bench/triggers_bench.py --events 2000 --kinds files
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from skyweave import Client, task, workflow
from skyweave.model.ids import new_id
from skyweave.triggers import on_files, on_messages, on_objects
from skyweave.triggers.messages import group_of, post_message
from skyweave.triggers.service import TriggerService


@task(version="1")
def take(name: str) -> str:
    return name


@workflow
def arrived(name: str) -> object:
    return take(name=name)


FLOW = f"{__file__}:arrived"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def count(client: Client, name: str) -> int:
    return sum(client.store.trigger_counts(name).values())


def progress(kind: str, t0: float, made: int, recorded: int) -> None:
    """How far a long run got (on stderr: the results on stdout stay JSON lines)."""
    print(f"{kind}: {time.perf_counter() - t0:.0f} s: {made} events made, {recorded} recorded",
          file=sys.stderr, flush=True)


def run_kind(kind: str, n: int, burst: int, root: Path, put_threads: int = 8) -> dict[str, object]:
    store = root / kind / "store"
    inbox = root / kind / "inbox"
    inbox.mkdir(parents=True)
    landed: dict[str, float] = {}
    with Client(str(store), engine=False) as client:
        if kind == "files":
            spec = on_files("bench", folder=inbox, settle_s=0, workflow=FLOW, params={"name": "{name}"})
        elif kind == "objects":
            from skyweave.storage.s3 import filesystem

            fs = filesystem()
            bucket = f"sw-trig-bench-{new_id('b')[-12:]}"
            fs.mkdir(bucket)
            spec = on_objects("bench", url=f"s3://{bucket}/incoming/", workflow=FLOW,
                              params={"name": "{name}"})
        else:
            spec = on_messages("bench", topic="bench", workflow=FLOW, params={"name": "{name}"})
        client.store.save_trigger(spec)
        client.bus.read(group_of("bench"), 1)
        service = TriggerService(client)
        stop = threading.Event()
        worker = threading.Thread(target=service.run, args=(stop,), daemon=True)
        t0 = time.perf_counter()
        worker.start()
        putters = concurrent.futures.ThreadPoolExecutor(put_threads)
        for start in range(0, n, burst):
            names = [f"ev{i:07d}.dat" for i in range(start, min(n, start + burst))]
            if kind == "files":
                for name in names:
                    part = inbox / f".{name}"
                    part.write_bytes(b"x")
                    part.rename(inbox / name)
                    landed[name] = time.time()
            elif kind == "objects":  # several puts at once: one at a time, moto's replies set the pace

                def put(name: str) -> tuple[str, float]:
                    fs.pipe(f"{bucket}/incoming/{name}", b"x")
                    return name, time.time()

                landed.update(putters.map(put, names))
            else:
                for name in names:
                    post_message(
                        client.bus,
                        "bench",
                        json.dumps({"name": name}),
                        message_id=new_id("msg"),
                        at=time.time(),
                    )
                    landed[name] = time.time()
            progress(kind, t0, len(landed), count(client, "bench"))
        made = time.perf_counter() - t0
        putters.shutdown()
        last = time.perf_counter()
        while (done := count(client, "bench")) < n:
            if time.perf_counter() - last >= 10:
                progress(kind, t0, len(landed), done)
                last = time.perf_counter()
            time.sleep(0.2)
        took = time.perf_counter() - t0
        stop.set()
        worker.join()
        runs = [
            r for r in client.store.list_runs(graph=False, limit=10 * n) if r.labels.get("trigger") == "bench"
        ]
        names = Counter(r.params["name"] for r in runs)
        latency = [r.created_at - landed[r.params["name"]] for r in runs]
        skipped = client.store.get_trigger("bench").skipped
    return {
        "kind": kind,
        "events": n,
        "runs": len(runs),
        "distinct": len(names),
        "doubled": sum(1 for c in names.values() if c > 1),
        "missed": n - len(names),
        "events_made_s": round(made, 2),
        "total_s": round(took, 2),
        "events_per_s": round(n / took, 1),
        "latency_p50_s": round(percentile(latency, 0.5), 3),
        "latency_p99_s": round(percentile(latency, 0.99), 3),
        "latency_mean_s": round(statistics.fmean(latency), 3),
        "skipped": skipped,
    }


def floor(n: int, root: Path) -> dict[str, object]:
    """The same workflow submitted in a plain loop: runs/s without triggers."""
    with Client(str(root / "floor" / "store"), engine=False) as client:
        t0 = time.perf_counter()
        for i in range(n):
            client.submit(FLOW, {"name": f"ev{i:07d}.dat"})
        took = time.perf_counter() - t0
    return {
        "kind": "plain Client.submit",
        "events": n,
        "total_s": round(took, 2),
        "events_per_s": round(n / took, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument("--kinds", default="files,messages")
    parser.add_argument("--put-threads", type=int, default=8, help="objects put at once (objects kind)")
    parser.add_argument("--floor-events", type=int, default=5_000, help="submits in the plain-loop floor")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="sw-trig-bench-") as tmp:
        root = Path(tmp)
        base = floor(args.floor_events, root)
        print(json.dumps(base))
        for kind in args.kinds.split(","):
            res = run_kind(kind, args.events, args.burst, root, args.put_threads)
            res["vs_plain_submit"] = round(float(res["events_per_s"]) / float(base["events_per_s"]), 2)  # type: ignore[arg-type]
            print(json.dumps(res))
            results.append(res)
        results.append(base)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    bad = [r for r in results if r.get("missed") or r.get("doubled")]
    if bad:
        raise SystemExit(f"events missed or doubled: {bad}")


if __name__ == "__main__":
    main()
