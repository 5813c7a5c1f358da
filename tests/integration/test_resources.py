"""An activity declaring resources.cpus = 2 holds two of the local executor's slots."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

from skyweave import Client

FLOW = textwrap.dedent('''
    import time
    from typing import Any
    from skyweave import Resources, task, workflow

    def _busy(seconds: float) -> dict[str, float]:
        start = time.time()
        while time.time() - start < seconds:
            pass
        return {"start": start, "end": time.time()}

    @task(version="1")
    def items(n: int) -> list[int]:
        return list(range(n))

    @task(version="1", resources=Resources(cpus=2))
    def heavy(i: int) -> dict[str, float]:
        return {"heavy": 1, **_busy(0.25)}

    @task(version="1")
    def light(i: int) -> dict[str, float]:
        return {"heavy": 0, **_busy(0.25)}

    @workflow
    def mixed(n: int = 3) -> Any:
        ids = items(n=n)
        return [heavy.map(i=ids), light.map(i=ids)]
''')


def test_two_cpu_activities_never_share_the_two_slots(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    with Client(str(tmp_path / "st"), workers=2) as client:
        run = client.run(f"{flow}:mixed", {"n": 3}, timeout=120)
        heavies, lights = run.results()
    spans = [(r["start"], r["end"], r["heavy"]) for r in heavies + lights]
    for (s1, e1, h1), (s2, e2, h2) in itertools.combinations(spans, 2):
        overlap = min(e1, e2) - max(s1, s2)
        if h1 or h2:
            assert overlap <= 0.01, f"a 2-CPU activity overlapped another by {overlap:.3f} s"
    light_overlaps = sum(1 for (s1, e1, h1), (s2, e2, h2) in itertools.combinations(spans, 2)
                         if not h1 and not h2 and min(e1, e2) - max(s1, s2) > 0.1)
    assert light_overlaps >= 1, "ordinary activities still use both slots"
