"""Work runs once, and the record says so: ``skyweave controller`` and ``skyweave worker`` processes
killed with -9 at random moments, executions counted by the task itself in a ledger file.

* A killed controller re-executes nothing: what finished while it was down is on the bus (kept
  until a controller commits it), and a restarted controller handles all of it before it settles
  what was in flight.
* A killed worker re-executes only what it was running, found dead by its missing heartbeats
  within seconds (not at the 60 s lease), and every execution has its own attempt row.
"""

from __future__ import annotations

import time

import pytest

from skyweave.model.records import AttemptRecord
from skyweave.store import open_store
from tests.e2e.chaos import Chaos, Verdict, count_starts, read_ledger
from tests.e2e.helpers import CLI, poll


def _assert_once(chaos: Chaos, verdict_text: str, n: int, verdict: Verdict) -> None:
    logs = chaos.logs()
    assert verdict.run_state == "succeeded", f"{verdict_text}\n{logs}"
    assert verdict.activities == n and verdict.states == {"succeeded": n}, verdict_text
    assert verdict.unexplained == [], f"{verdict_text}\n" + "\n".join(verdict.unexplained[:10])
    assert verdict.unrecorded == [], f"{verdict_text}\n" + "\n".join(verdict.unrecorded[:10])
    for kill in verdict.kills:
        if kill.what == "controller":
            continue
        for aid in kill.running:
            runs = read_ledger(chaos.ledger)[aid]
            if runs[-1].worker_pid == kill.pid and runs[-1].ended is None:
                pytest.fail(f"{aid} was left running on dead worker {kill.pid}: {verdict_text}")


def test_kill_9_of_the_controller_reexecutes_nothing_and_of_a_worker_only_its_work(cli: CLI) -> None:
    n = 120
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=1.0)
    try:
        chaos.start_controller()
        chaos.start_worker()
        chaos.start_worker()
        gate = cli.cwd / "gate"
        # the last 4 items wait for the gate: some work is surely running when a busy worker is
        # looked for, however fast the rest went (on a loaded machine all 120 once ended first)
        run_id = chaos.submit(n, 0.05, gate=str(gate), gated=4)
        chaos.wait_for_starts(n // 4)
        chaos.kill_controller()
        time.sleep(1.0)  # the outage: the workers finish what they hold meanwhile
        chaos.start_controller()
        chaos.wait_for_starts(n // 2)
        killed = chaos.kill_busy_worker()
        gate.write_text("open")
        chaos.start_worker()
        verdict = chaos.verdict(run_id, chaos.wait_for_end(run_id))
    finally:
        chaos.close()
    text = verdict.summary()
    print(text)
    _assert_once(chaos, text, n, verdict)
    assert killed.running, "the worker was killed while it ran something"
    # nothing re-executed but what the dead worker ran, and each re-execution is recorded
    assert set(verdict.repeated) <= killed.running
    assert verdict.lost_attempts >= len(verdict.repeated) >= 1


@pytest.mark.slow
def test_2000_activities_with_5_kill_9_each_of_controller_and_workers(cli: CLI) -> None:
    """The issue's scenario: 2,000 activities, two workers, 5 kills of the controller and 5 of a
    worker at random moments (2 of them a worker and the controller together)."""
    chaos = Chaos(cli)
    schedule = ["worker", "both", "controller", "worker", "both", "controller", "worker", "controller"]
    started = time.monotonic()
    try:
        verdict = chaos.run(2000, 0.01, schedule, seed=1)
    finally:
        chaos.close()
    text = f"{verdict.summary()}; {time.monotonic() - started:.0f} s"
    print(text)
    _assert_once(chaos, text, 2000, verdict)
    assert sum(k.what == "controller" for k in verdict.kills) == 5
    assert sum(k.what == "worker" for k in verdict.kills) == 5


@pytest.mark.slow
def test_a_dead_workers_work_runs_elsewhere_within_seconds_a_slow_one_keeps_its_work(cli: CLI) -> None:
    timeout = 1.0
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=timeout, lease_s=60.0)
    try:
        chaos.start_controller()
        slow = chaos.start_worker(slots=1)
        # slow but alive: one activity of 4 s, four times the timeout, heartbeats going on
        run_id = chaos.submit(1, 4.0)
        assert chaos.wait_for_end(run_id, deadline=60) == "succeeded", chaos.logs()
        (only,) = read_ledger(chaos.ledger).values()
        assert [(e.attempt, e.worker_pid) for e in only] == [(1, slow.pid)], "a slow worker keeps its work"
        # dead: an activity of 30 s, its worker killed while it runs, a second worker ready
        run_id = chaos.submit(1, 30.0)
        chaos.wait_for_starts(2)
        other = chaos.start_worker(slots=1)
        chaos.wait_until_serving(other)
        kill = chaos.kill_worker(slow)

        def moved() -> float | None:
            for exs in read_ledger(chaos.ledger).values():
                if exs[-1].worker_pid == other.pid:
                    return exs[-1].started
            return None

        at = poll(moved, deadline=50, what="the dead worker's activity to start elsewhere", interval=0.05)
        elapsed = at - kill.at
        print(f"worker killed -> its activity running on another worker: {elapsed:.2f} s "
              f"(heartbeat 0.2 s, worker_timeout_s {timeout} s, lease 60 s)")
        assert elapsed < 20, "found by its heartbeats, not at the end of the 60 s lease"
        store = open_store(str(cli.store))
        try:
            (act,) = [a for a in store.list_activities(run_id=run_id) if a.task_name == "counted"]
            first, second = poll(lambda: _two(store.list_attempts(act.id)), deadline=30,
                                 what="the second attempt to be recorded")
        finally:
            store.close()
    finally:
        chaos.close()
    assert count_starts(chaos.ledger) == 3
    assert first.state == "lost" and first.error is not None
    assert "sent no heartbeat" in first.error["message"] and "while it ran" in first.error["message"]
    assert second.state == "running" and second.worker is not None and f"-{other.pid}-" in second.worker
    out = cli("logs", first.activity_id).ok().out
    assert "attempt 1 (lost)" in out and "skyweave.WorkerLost" in out and "sent no heartbeat" in out


def _two(attempts: list[AttemptRecord]) -> tuple[AttemptRecord, AttemptRecord] | None:
    return (attempts[0], attempts[1]) if len(attempts) == 2 else None
