"""Run controls end to end: ``skyweave controller`` and ``skyweave worker`` as separate processes
(as the docs deploy them), starts counted from a side-effect file the activities append to.

* After ``skyweave pause`` returns, no activity of the run starts until ``skyweave resume`` — not
  even those already on the bus (the dispatch window puts a small run there at once) or taken
  ahead by a worker; the running ones finish.
* A priority-0 activity submitted into a saturating stream of priority-3 work starts within a
  bound set by ``aging_s``: asserted from the order of starts, not from seconds.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.client import Client
from skyweave.config.settings import load_settings
from skyweave.model import messages as m
from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, flat, poll, service_logs, stop

CONTROLS = WORKFLOWS / "controls.py"


def _start(cli: CLI, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(cli_argv(*args, "--store", str(cli.store)), cwd=cli.cwd,
                                env={**cli_env(), **env}, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


STEADY = {"SKYWEAVE_WORKER_TIMEOUT_S": "120", "SKYWEAVE_CONTROLLER_LEASE_S": "120"}
"""A loaded machine must not make the controller take the worker for dead (its work would run
again) nor lose its own lease: neither is what these tests are about."""


def _claimed(cli: CLI) -> int:
    """Dispatches a worker holds (claimed, not reported done), read from the bus file."""
    path = load_settings(store=str(cli.store)).bus_url(shared=True).removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        (n,) = conn.execute("SELECT count(*) FROM dispatch WHERE worker IS NOT NULL AND done = 0").fetchone()
    return int(n)


def _starts(log: Path) -> list[str]:
    """``TAG I`` of every start so far, in order."""
    return log.read_text().splitlines() if log.is_file() else []


def _ended(client: Client, run_id: str) -> str | None:
    state = str(client.store.get_run_head(run_id).state)
    return state if state in ("succeeded", "failed", "cancelled") else None


def _state(client: Client, run_id: str) -> str:
    return str(client.store.get_run_head(run_id).state)


@pytest.fixture
def client(cli: CLI) -> Iterator[Client]:
    """Submits and reads the store in this process (a ``skyweave`` command costs seconds of start-up
    on a loaded machine); the controls under test go through the CLI."""
    with Client(str(cli.store), engine=False) as c:
        yield c


@pytest.mark.slow
def test_no_activity_of_a_paused_run_starts_after_pause_returns(cli: CLI, client: Client) -> None:
    """Twelve activities each waiting for a gate, two slots: two start, the rest wait on the bus or
    taken ahead by the worker.  Paused, then the gate opened: the two running ones finish and none
    of the others starts; a probe run submitted after the pause, of the same priority, starts only
    after the worker has looked at (and given back) what it took of the paused run, so once the
    probe has ended nothing of the paused run can still be about to start."""
    log, gate = cli.cwd / "starts.log", cli.cwd / "gate"
    procs = [_start(cli, "controller", log=cli.cwd / "controller.log", **STEADY),
             _start(cli, "worker", "--slots", "2", log=cli.cwd / "worker.log", **STEADY)]
    try:
        run_id = client.submit(f"{CONTROLS}:started_log", {"n": 12, "tag": "p", "log": str(log),
                                                           "gate": str(gate)}).id
        poll(lambda: len(_starts(log)) >= 2, deadline=60, what="both slots to run an activity", interval=0.05)
        paused = cli("pause", run_id).ok()
        assert f"paused {run_id}" in flat(paused.out), paused.out
        before = _starts(log)
        assert len(before) == 2, "a worker takes ahead only what it can start, unless it is short"
        assert _state(client, run_id) == "paused"

        gate.touch()  # the two running activities finish; ten of the run are on the bus, held
        probe = client.submit(f"{CONTROLS}:one_logged", {"tag": "probe", "log": str(log)}).id
        assert poll(lambda: _ended(client, probe), deadline=60, what="the probe", interval=0.05) == "succeeded"
        poll(lambda: len(client.store.list_activities(run_id=run_id, states=["succeeded"], task_name="logged"))
             >= 2, deadline=60, what="the two running activities to finish", interval=0.05)
        assert [s for s in _starts(log) if s.startswith("p ")] == before, "started while paused"
        assert _state(client, run_id) == "paused"

        cli("resume", run_id).ok()
        done = poll(lambda: _ended(client, run_id), deadline=60, what="the resumed run", interval=0.05)
        assert done == "succeeded", service_logs(cli)
        started = [s for s in _starts(log) if s.startswith("p ")]
        assert sorted(started) == sorted(f"p {i}" for i in range(12)), "each started once"
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.slow
def test_short_work_a_worker_took_ahead_does_not_start_after_pause_returns(cli: CLI, client: Client) -> None:
    """Six activities of a task the worker knows to be short, taken by it while both its slots run
    longer work (``blocker``): once ``pause`` returns none of them starts, not when the slots free
    up either (they were not handed to the executor, and are given back held); after ``resume``
    each starts once.  On a worker that hands short work to its executor at once, all six started
    as soon as the blockers ended."""
    log, gate = cli.cwd / "starts.log", cli.cwd / "gate"
    procs = [_start(cli, "controller", log=cli.cwd / "controller.log", **STEADY),
             _start(cli, "worker", "--slots", "2", log=cli.cwd / "worker.log", **STEADY)]
    try:
        warm = client.submit(f"{CONTROLS}:listed_log", {"n": 3, "tag": "w", "log": str(log)}).id
        assert poll(lambda: _ended(client, warm), deadline=60, what="the warm-up", interval=0.05) == "succeeded"
        blockers = client.submit(f"{CONTROLS}:blocked", {"n": 2, "log": str(log), "gate": str(gate)}).id
        poll(lambda: sum(s.startswith("b ") for s in _starts(log)) == 2, deadline=60,
             what="both slots to run a blocker", interval=0.05)
        run_id = client.submit(f"{CONTROLS}:listed_log", {"n": 6, "tag": "p", "log": str(log)}).id
        poll(lambda: _claimed(cli) == 2 + 6, deadline=60, what="the worker to take the six activities",
             interval=0.05)
        paused = cli("pause", run_id).ok()
        assert f"paused {run_id}" in flat(paused.out), paused.out

        gate.touch()  # the slots free up; a probe submitted after the six is taken after them
        probe = client.submit(f"{CONTROLS}:one_logged", {"tag": "probe", "log": str(log)}).id
        assert poll(lambda: _ended(client, probe), deadline=60, what="the probe", interval=0.05) == "succeeded"
        assert poll(lambda: _ended(client, blockers), deadline=60, what="the blockers") == "succeeded"
        assert [s for s in _starts(log) if s.startswith("p ")] == [], "started while paused"
        assert _state(client, run_id) == "paused"

        cli("resume", run_id).ok()
        done = poll(lambda: _ended(client, run_id), deadline=60, what="the resumed run", interval=0.05)
        assert done == "succeeded", service_logs(cli)
        assert sorted(s for s in _starts(log) if s.startswith("p ")) == [f"p {i}" for i in range(6)]
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.slow
def test_cancel_stops_running_work_closes_its_attempt_and_logs_say_so(cli: CLI, client: Client) -> None:
    """Issue 18 point 3: ``cancel --help`` says running work is stopped; a cancelled running
    activity's attempt row is closed as cancelled with its end time; ``logs`` says it was cancelled."""
    assert "running activities are stopped" in flat(cli("cancel", "--help").ok().out)
    log, gate = cli.cwd / "starts.log", cli.cwd / "gate"
    procs = [_start(cli, "controller", log=cli.cwd / "controller.log", **STEADY),
             _start(cli, "worker", "--slots", "1", log=cli.cwd / "worker.log", **STEADY)]
    try:
        run_id = client.submit(f"{CONTROLS}:started_log", {"n": 2, "tag": "c", "log": str(log),
                                                           "gate": str(gate)}).id
        poll(lambda: _starts(log), deadline=60, what="an activity to start", interval=0.05)
        cli("cancel", run_id).ok()
        assert poll(lambda: _ended(client, run_id), deadline=60, what="the cancel", interval=0.05) == "cancelled"
        [running] = [a for a in client.store.list_activities(run_id=run_id, task_name="logged")
                     if client.store.list_attempts(a.id)]
        [attempt] = client.store.list_attempts(running.id)
        assert attempt.state == "cancelled" and attempt.ended_at is not None, attempt
        assert attempt.ended_at >= attempt.started_at
        shown = flat(cli("logs", running.id).ok().out)
        assert "attempt 1 (cancelled)" in shown and "was cancelled" in shown, shown
        assert len(_starts(log)) == 1, "the other one never started"
    finally:
        gate.touch()
        for proc in procs:
            stop(proc)


def _enqueued_at(cli: CLI, dispatch: str) -> float | None:
    """When the controller put this dispatch on the bus (its clock), read from the bus file."""
    path = load_settings(store=str(cli.store)).bus_url(shared=True).removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        row = conn.execute("SELECT enqueued_at FROM dispatch WHERE id = ?", (dispatch,)).fetchone()
    return None if row is None else float(row[0])


@pytest.mark.slow
def test_low_priority_starts_within_the_aging_bound_under_a_saturating_stream(cli: CLI, client: Client) -> None:
    """One slot, held by a gated activity while a backlog of priority-3 activities, then a
    priority-0 one, then the start of a stream of priority-3 ones are put on the bus; the stream's
    first dispatches are enqueued once the bus's clock has passed the priority-0 one's enqueue time
    + ``3 * aging_s`` (read from the bus).  Then the gate opens and the stream goes on, two
    activities per start seen (more than the worker takes, so the queue never empties).  From the
    order of starts alone: only the gated one and the backlog start before the priority-0 one, and
    stream work is still waiting when it starts.  Without aging on the bus, the whole stream
    started first.  (Nothing depends on how fast the machine is: the slot is held until the stream
    is on the bus; before, on a quiet machine the backlog ended before the stream began.)

    The priority-0 and stream activities take 0.3 s (``paced``): the worker hands such work to
    its executor one at a time, in the bus's order.  (Short work goes over a batch per slot, and
    inside that batch an executor runs the higher priority first.)"""
    seconds, aging_s, backlog, stream = 0.3, 0.2, 6, 30
    log, gate = cli.cwd / "starts.log", cli.cwd / "gate"
    env = {"SKYWEAVE_AGING_S": str(aging_s), **STEADY}
    procs = [_start(cli, "controller", log=cli.cwd / "controller.log", **env),
             _start(cli, "worker", "--slots", "1", log=cli.cwd / "worker.log", **env)]
    try:
        def high(tag: str) -> str:
            return client.submit(f"{CONTROLS}:one_paced", {"tag": tag, "log": str(log), "seconds": seconds},
                                 priority=3).id

        def on_bus(run_id: str) -> float:
            [act] = poll(lambda: client.store.list_activities(run_id=run_id), deadline=60, what="the activity",
                         interval=0.02)
            return poll(lambda: _enqueued_at(cli, m.dispatch_id(act.id, 1)), deadline=60,
                        what="its dispatch on the bus", interval=0.02)

        client.submit(f"{CONTROLS}:blocked", {"n": 1, "log": str(log), "gate": str(gate)}, priority=9)
        poll(lambda: "b 0" in _starts(log), deadline=60, what="the gated activity to hold the slot", interval=0.02)
        client.submit(f"{CONTROLS}:listed_log", {"n": backlog, "tag": "h", "log": str(log)}, priority=3)
        low = client.submit(f"{CONTROLS}:one_paced", {"tag": "low", "log": str(log), "seconds": seconds})
        at = on_bus(low.id)
        poll(lambda: time.time() > at + 3 * aging_s, deadline=60, what="its aging window", interval=0.02)
        for run_id in (high("s0a"), high("s0b")):
            assert on_bus(run_id) > at + 3 * aging_s
        gate.write_text("open")
        seen = len(_starts(log))
        for k in range(1, stream):
            if any(s.startswith("low ") for s in _starts(log)):
                break
            high(f"s{k}a")
            high(f"s{k}b")
            seen = poll(lambda: len(_starts(log)) > seen and len(_starts(log)), deadline=60,  # noqa: B023
                        what="the next start", interval=0.02)
        low.wait(timeout=120)
        order = _starts(log)
        ahead, behind = order[: order.index("low 0")], order[order.index("low 0") + 1:]
        assert ahead[0] == "b 0" and all(s.startswith("h ") for s in ahead[1:]), (
            f"started before the priority-0 activity: {ahead} (only the gated one and the backlog may)\n"
            f"{service_logs(cli)}")
        assert any(s.startswith("s") for s in behind), "the stream was still waiting when it started"
    finally:
        for proc in procs:
            stop(proc)
