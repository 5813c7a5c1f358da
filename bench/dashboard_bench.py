"""The dashboard on a big run (issue 16, point 7): how long the page of a run with N activities
(100,000 by default) takes to render in Debian's Chromium, from navigation to the graph drawn.

A store is filled directly with one run whose fan-out made N activities (mixed states, with start
and end times), a ``skyweave server`` is started on 127.0.0.1, and Playwright loads the run page
``--reps`` times, reading the browser's own clock: ``performance.now()`` when the graph says it is
drawn (navigation starts at 0).  The same page of a 10-activity run is measured in the same run as
the reference: the ratio says how much the size of the run costs the page.

    .venv/bin/python bench/dashboard_bench.py [--activities 100000] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skyweave import Client
from skyweave.authoring.targets import load_workflow
from skyweave.model.records import ActivityRecord, Changeset, RunRecord
from skyweave.server.tokens import create_token

FLOW = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "workflows" / "dash.py"
STATES = ("succeeded", "succeeded", "succeeded", "running", "queued", "failed")


def make_run(client: Client, n: int) -> str:
    graph, _ = load_workflow(f"{FLOW}:growing").build({"n": n, "gate": "/nowhere"})
    now = time.time()
    run = RunRecord(
        id=f"run-bench{n:08d}",
        workflow="growing",
        state="running",
        graph=graph,
        params=graph["params"],
        created_at=now - 3600,
        started_at=now - 3600,
    )
    acts = [
        ActivityRecord(
            id=f"act-split{n}",
            run_id=run.id,
            node="split",
            task_name="split",
            task_version="1",
            state="succeeded",
            created_at=now - 3600,
            started_at=now - 3600,
            ended_at=now - 3590,
        )
    ]
    for i in range(n):
        state = STATES[i % len(STATES)]
        started = now - 3500 + i * 3000 / n
        acts.append(
            ActivityRecord(
                id=f"act-c{n}-{i:07d}",
                run_id=run.id,
                node="calibrate",
                key=str(i),
                task_name="calibrate",
                task_version="1",
                state=state,
                created_at=started,
                started_at=None if state == "queued" else started,
                ended_at=started + 30 if state in ("succeeded", "failed") else None,
            )
        )
    for i in range(0, len(acts), 20_000):
        client.store.apply(Changeset(runs=[run] if i == 0 else [], activities=acts[i : i + 20_000]))
    return run.id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(url: str, token: str, run_id: str, reps: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"{url}/ui/login")
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/runs")
        for _ in range(reps + 1):  # the first load warms the server's caches and the browser's
            page.goto(f"{url}/ui/runs/{run_id}")
            page.wait_for_function(
                "Number(document.getElementById('graph').dataset.drawn || 0) >= 3", timeout=120_000
            )
            times.append(page.evaluate("performance.now()") / 1000)
        browser.close()
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw-dash-bench-") as tmp:
        store = Path(tmp) / "store"
        with Client(str(store), engine=False) as client:
            t0 = time.perf_counter()
            big = make_run(client, args.activities)
            small = make_run(client, 10)
            filled = time.perf_counter() - t0
            token, _ = create_token(client.store, "bench", ["read"])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "skyweave.cli.main", "server", "--port", str(port), "--store", str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            big_s = measure(url, token, big, args.reps)
            small_s = measure(url, token, small, args.reps)
        finally:
            server.terminate()
            server.wait(10)
    result = {
        "activities": args.activities,
        "store_filled_s": round(filled, 1),
        "render_s_median": round(statistics.median(big_s), 3),
        "render_s_max": round(max(big_s), 3),
        "small_run_render_s_median": round(statistics.median(small_s), 3),
        "ratio_big_vs_small": round(statistics.median(big_s) / statistics.median(small_s), 2),
        "all_s": [round(t, 3) for t in big_s],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
