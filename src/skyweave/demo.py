"""``skyweave demo``: unknown fan-out, a backtrack, and an urgent run overtaking queued work."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.text import Text

from skyweave.client import Client
from skyweave.examples import mini_xray

console = Console(markup=False)  # paths and names are printed as they are, never as markup


def run_demo(store: str | None = None, *, as_json: bool = False, backlog: int = 24,
             seconds: float = 0.25) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    with Client(store) as client:
        def say(text: str | Text) -> None:
            if not as_json:
                console.print(text)

        say(Text("1. an observation with an unknown number of detectors and a missing attitude file",
                 style="bold"))
        obs = client.run(mini_xray.observation, {"obs_id": f"demo{int(time.time()) % 100000:05d}"},
                         progress=not as_json)
        acts = obs.activities()
        detours = [(a.task_name, d.kind, d.product_type) for a in acts for d in a.detours]
        providers = [a for a in acts if not a.node]
        result = obs.results()
        fanout = sum(1 for a in acts if a.task_name == "decode_events")
        say(f"   run {obs.id}: {obs.status}; fan-out over {fanout} detectors found at run time")
        say(f"   backtrack: {len(providers)} provider activit{'y' if len(providers) == 1 else 'ies'} "
            f"({', '.join(sorted({p.task_name for p in providers}))}) ran for "
            f"{sum(1 for a in acts if a.task_name == 'calibrate' and a.detours)} calibrate activities; "
            f"detours recorded: {len(detours)}")
        say(f"   merged result: {result}")
        summary["observation"] = {"run_id": obs.id, "status": obs.status, "detectors": fanout,
                                  "providers": len(providers), "detours": len(detours), "result": result}

        say(Text("2. an urgent run submitted behind a backlog of low-priority work", style="bold"))
        slow = client.submit(mini_xray.backlog, {"n": backlog, "seconds": seconds})
        while not any(a.state == "running" for a in slow.activities()):
            time.sleep(0.02)
        submitted = time.time()
        fast = client.submit(mini_xray.urgent, {"obs_id": "burst01"})
        fast.wait(timeout=120)
        slow.wait(timeout=600)
        alert_done = fast.results()["finished"]
        after = sum(1 for r in slow.results() if r["finished"] > alert_done)
        latency = alert_done - submitted
        say(f"   urgent run {fast.id}: {fast.status} {latency:.2f} s after submission; "
            f"{after} of {backlog} backlog activities were still waiting and ran after it")
        summary["priority"] = {"backlog_run": slow.id, "urgent_run": fast.id, "overtaken": after,
                               "backlog": backlog, "urgent_latency_s": round(latency, 3)}
        store_dir = client.settings.store_dir
        summary["store"] = str(store_dir)
        summary["products"] = str(store_dir / "products")
        say(Text.assemble(("store", "bold"), f" {store_dir}  ", ("products", "bold"),
                          f" {store_dir / 'products'}"))
        say(f"look around: skyweave runs | skyweave status {obs.id} | skyweave products list --run {obs.id}")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
