"""A miniature X-ray observation pipeline used by ``skyweave demo``.

It is small but real: it simulates photon events on a random number of CMOS detectors (the
*unknown fan-out*), needs an attitude file that does not exist yet (a *backtrack*: the controller
runs ``fetch_attitude`` with a wider window, then calibrates again), counts sources per detector
and merges the counts.  ``quicklook`` is a slow low-priority task used to fill the queue so that an
*urgent* run can be seen overtaking it.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from skyweave import MissingInput, Product, context, task, workflow

ATTITUDE = "demo.aux.attitude"


@task(version="1.0")
def list_detectors(obs_id: str, seed: int) -> list[str]:
    """Which CMOS detectors delivered data: only known once the telemetry is read."""
    rng = random.Random(f"{obs_id}:{seed}")
    return [f"cmos{i}" for i in sorted(rng.sample(range(12), rng.randint(3, 6)))]


@task(version="1.0")
def decode_events(obs_id: str, detector: str, seed: int) -> Product:
    """Simulate an event list: background plus one or two point sources."""
    rng = random.Random(f"{obs_id}:{detector}:{seed}")
    sources = [(rng.uniform(10, 90), rng.uniform(10, 90)) for _ in range(rng.randint(1, 2))]
    events = [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(200)]
    for x, y in sources:
        events += [(rng.gauss(x, 1.0), rng.gauss(y, 1.0)) for _ in range(150)]
    path = context().output(f"{obs_id}_{detector}_events.json")
    path.write_text(json.dumps({"events": events, "truth": sources}))
    return Product(path, type="demo.l1.events", obs_id=obs_id, detector=detector)


@task(version="1.0")
def fetch_attitude(obs_id: str, window: float = 100.0) -> Product:
    """The attitude provider: writes an attitude file covering ``window`` seconds."""
    path = context().output(f"{obs_id}_attitude.json")
    path.write_text(json.dumps({"obs_id": obs_id, "window": window, "ra": 83.63, "dec": 22.01}))
    return Product(path, type=ATTITUDE, obs_id=obs_id, attributes={"window": window})


@task(version="1.0", providers={ATTITUDE: "fetch_attitude"}, max_detours=2)
def calibrate(events: Product, attitude: Product | None = None) -> Product:
    """Attach sky coordinates; needs attitude data covering the observation."""
    obs_id = events.obs_id or ""
    if attitude is None:
        raise MissingInput("attitude", ATTITUDE, match={"obs_id": obs_id},
                           reason=f"no attitude file for {obs_id}",
                           provider_params={"obs_id": obs_id, "window": 600.0})
    att = json.loads(attitude.local_path.read_text())
    data = json.loads(events.local_path.read_text())
    data["pointing"] = [att["ra"], att["dec"]]
    path = context().output(events.local_path.name.replace("events", "calevents"))
    path.write_text(json.dumps(data))
    return Product(path, type="demo.l2.events", obs_id=obs_id, detector=events.detector)


@task(version="1.1")
def detect_sources(events: Product) -> dict[str, Any]:
    """A toy detection: 4x4-pixel cells far above the background, grouped into connected blobs."""
    data = json.loads(events.local_path.read_text())
    cells: dict[tuple[int, int], int] = {}
    for x, y in data["events"]:
        cell = (int(x // 4), int(y // 4))
        cells[cell] = cells.get(cell, 0) + 1
    mean = len(data["events"]) / 625
    hot = {c for c, n in cells.items() if n > 12 * mean}
    blobs = 0
    while hot:
        blobs += 1
        stack = [hot.pop()]
        while stack:
            cx, cy = stack.pop()
            for nb in ((cx + dx, cy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)):
                if nb in hot:
                    hot.remove(nb)
                    stack.append(nb)
    return {"detector": events.detector, "sources": blobs, "truth": len(data["truth"])}


@task(version="1.0")
def merge_counts(per_detector: list[dict[str, Any]]) -> dict[str, Any]:
    """Gather every detector's result (waits for all of them, whatever their number)."""
    return {"detectors": len(per_detector),
            "sources_found": sum(d["sources"] for d in per_detector),
            "sources_injected": sum(d["truth"] for d in per_detector)}


@workflow
def observation(obs_id: str = "demo0001", seed: int = 7) -> Any:
    detectors = list_detectors(obs_id=obs_id, seed=seed)
    events = decode_events.map(obs_id=obs_id, detector=detectors, seed=seed)
    calibrated = calibrate.map(events=events)
    found = detect_sources.map(events=calibrated)
    return merge_counts(per_detector=found)


@task(version="1.0")
def quicklook(index: int, seconds: float) -> dict[str, float]:
    """A slow low-priority job (busy CPU, not a sleep) used to fill the queue."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return {"index": index, "finished": time.time()}


@task(version="1.0")
def indices(n: int) -> list[int]:
    return list(range(n))


@workflow
def backlog(n: int = 24, seconds: float = 0.25) -> Any:
    return quicklook.map(index=indices(n=n), seconds=seconds)


@task(version="1.0", priority=10)
def alert(obs_id: str) -> dict[str, Any]:
    """An urgent alert: must not wait behind the backlog."""
    return {"obs_id": obs_id, "finished": time.time()}


@workflow
def urgent(obs_id: str = "burst01") -> Any:
    return alert(obs_id=obs_id)
