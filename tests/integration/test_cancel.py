"""Cancelling a run stops its running activities on the worker, not only its queued ones."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from skyweave import Client

FLOW = textwrap.dedent('''
    import time
    from typing import Any
    from skyweave import task, workflow

    @task(version="1")
    def forever(seconds: float) -> str:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return "done"

    @task(version="1")
    def quick(x: int) -> int:
        return x + 1

    @workflow
    def long(seconds: float = 60.0) -> Any:
        return forever(seconds=seconds)

    @workflow
    def short(x: int = 1) -> Any:
        return quick(x=x)
''')


def test_cancel_stops_a_running_activity_and_frees_its_slot(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    with Client(str(tmp_path / "st"), workers=1) as client:
        run = client.submit(f"{flow}:long", {"seconds": 120.0})
        deadline = time.monotonic() + 30
        while not any(a.state == "running" for a in run.activities()):
            assert time.monotonic() < deadline, "the activity never started"
            time.sleep(0.02)
        started = time.monotonic()
        client.cancel(run.id)
        assert run.wait(timeout=30).status == "cancelled"
        (act,) = run.activities()
        assert act.state == "cancelled"
        (attempt,) = client.store.list_attempts(act.id)
        assert attempt.state == "cancelled" and attempt.ended_at is not None, "its attempt row is closed"
        # the only slot is free again long before the 120 s task would have ended
        follow = client.run(f"{flow}:short", {"x": 41}, timeout=30)
        assert follow.results() == 42
        assert time.monotonic() - started < 20
