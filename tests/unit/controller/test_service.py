"""The controller service with a real store and bus: it settles, recovers, and is not fooled by
its own announcements."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyweave import Client
from skyweave.bus import open_bus
from skyweave.bus.base import CONTROLLER_GROUP
from skyweave.controller.service import ControllerService
from skyweave.engine import Engine, make_env
from skyweave.errors import LeaseLostError
from skyweave.examples import mini_xray
from skyweave.executors.threads import ThreadExecutor
from skyweave.executors.worker import WorkerService
from skyweave.model import messages as m
from skyweave.model.ids import new_id
from skyweave.store import open_store
from tests.e2e.chaos import count_starts, read_ledger


def _settle(client: Client, timeout: float = 20.0) -> None:
    """Wait until the controller has read everything on the bus."""
    deadline = time.monotonic() + timeout
    while client.bus.read(CONTROLLER_GROUP, 1):
        assert time.monotonic() < deadline, "the controller never caught up with the bus"
        time.sleep(0.02)


def test_controller_goes_quiet_after_a_run_with_products(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        run = client.run(mini_xray.observation, {"obs_id": "q1"}, timeout=60)
        assert run.status == "succeeded"
        assert run.products(), "the run made products"
        _settle(client)
        # its own product announcements must not feed back into it: with the engine's threads
        # stopped, the test steps the controller itself; after at most one step that reads what
        # was still on its way, each step finds nothing and publishes nothing for the next
        assert client.engine is not None and client.engine.controller is not None
        client.engine._stop.set()
        for t in client.engine._threads:
            t.join(10)
        controller = client.engine.controller
        handled = [controller.step(wait=0.0) for _ in range(5)]
        assert handled[1:] == [0, 0, 0, 0], handled
        assert client.bus.read(CONTROLLER_GROUP, 1) == []


def test_restart_recovers_in_flight_work_from_the_store(tmp_path: Path) -> None:
    store = str(tmp_path / "st")
    bus = f"sqlite:///{tmp_path / 'bus.db'}"
    # a controller alone (no worker) dispatches and is then "killed" (never stopped cleanly)
    with Client(store, engine=False, bus=bus) as client:
        engine = Engine(client.settings, store=client.store, bus=client.bus, worker=False).start()
        run = client.submit(mini_xray.backlog, {"n": 6, "seconds": 0.01})
        deadline = time.monotonic() + 20
        while not any(a.state == "dispatched" for a in run.activities()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        engine._stop.set()  # simulate a crash: threads stop, no lease released, no cleanup
        for t in engine._threads:
            t.join(5)
        assert engine.controller is not None
        dead: ControllerService = engine.controller
        # a new controller on the same store takes over once the old lease is released or expires
        client.store.release_controller_lease(dead.owner)
        with Engine(client.settings, store=client.store, bus=client.bus):
            final = client.wait(run.id, timeout=30)
        assert final.state == "succeeded"
        assert len([a for a in run.activities() if a.task_name == "quicklook"]) == 6


def test_malformed_bus_message_is_set_aside_and_the_run_goes_on(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        client.bus.publish([b"{not json", b'{"v": 1, "id": "x", "body": {"type": "activity.finished"}}'])
        run = client.run(mini_xray.observation, {"obs_id": "m1"}, timeout=60)
        assert run.status == "succeeded"
        reasons = [letter.error for letter in client.bus.dead_letters()]
        assert len(reasons) == 2
        assert all("malformed bus message" in r for r in reasons)
        assert client.engine is not None
        client.engine.check()


def test_loop_and_condition_on_the_real_engine(tmp_path: Path) -> None:
    from tests.unit.controller import flows

    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        loop_run = client.run(flows.converge, {"start": 8.0}, timeout=60)
        assert loop_run.status == "succeeded"
        assert loop_run.results() == {"value": 1.0, "delta": 0.5}
        cond = client.run(flows.conditional, {"n": 4}, timeout=60)
        assert cond.status == "succeeded"
        assert cond.results() == 81
        states = sorted(a.state for a in cond.activities() if a.node == "square_2")
        assert states == ["skipped", "skipped", "skipped", "succeeded"]


def test_a_registered_product_named_by_the_workflow_and_unmapped(tmp_path: Path) -> None:
    from skyweave.errors import NotFoundError
    from tests.unit.controller import flows

    raw = tmp_path / "raw.txt"
    raw.write_text("a\nb\nc\nd\n")
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        product = client.add_product(raw, type="raw.text", obs_id="o1")
        run = client.run(flows.external, {"raw": product.id, "n": 3}, timeout=60)
        assert run.status == "succeeded"
        assert run.results() == [0, 4, 8], "each item times the line count, passed unmapped"
        (counted,) = [a for a in run.activities() if a.task_name == "line_count"]
        assert [u.product_id for u in client.store.list_usages(activity_id=counted.id)] == [product.id]
        with pytest.raises(NotFoundError):
            client.submit(flows.external, {"raw": "prd-nope", "n": 1})


def test_a_chain_costs_one_store_transaction_per_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step's end, the next activity's creation, its cache check and its dispatch are written
    together: the worker holds a fast activity's "started" report to send it with its end, and the
    controller answers cache checks before committing.  A second identical run reuses every step,
    still in one transaction each."""
    from skyweave.model.records import Changeset
    from skyweave.store.sqlite import SQLiteStore
    from tests.unit.controller import flows

    applied: list[int] = []
    real_apply = SQLiteStore.apply

    def counting_apply(self: SQLiteStore, changes: Changeset) -> None:
        applied.append(len(changes.activities))
        real_apply(self, changes)

    monkeypatch.setattr(SQLiteStore, "apply", counting_apply)
    with Client(str(tmp_path / "st"), executor="threads", workers=1) as client:
        first = client.run(flows.chain, {"length": 20}, timeout=60)
        assert first.status == "succeeded" and first.results() == 20
        assert {a.state for a in first.activities()} == {"succeeded"}
        assert len(applied) <= 20 + 3, applied                 # was two per step (40+)
        applied.clear()
        again = client.run(flows.chain, {"length": 20}, timeout=60)
        assert again.results() == 20
        reused = [a for a in again.activities() if a.detours and a.detours[-1].kind == "reused"]
        assert len(reused) == 20 and len(applied) <= 4, applied   # 16 reuses per transaction at most


def _crash(engine: Engine) -> ControllerService:
    """Stop an engine's threads as a kill -9 would: no lease released, nothing cleaned up."""
    engine._stop.set()
    for t in engine._threads:
        t.join(5)
    assert engine.controller is not None
    return engine.controller


def _step_until(worker: WorkerService, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        worker.step(0.01)


def test_work_finished_while_no_controller_runs_is_not_run_again(tmp_path: Path) -> None:
    """The workers go on while the controller is down; a new controller must take their outcomes
    from the bus, not hand the finished work out again (every execution is in the ledger)."""
    from tests.e2e.workflows import once

    ledger = tmp_path / "ledger.txt"
    n = 12
    with Client(str(tmp_path / "st"), engine=False, bus=f"sqlite:///{tmp_path / 'bus.db'}") as client:
        worker = WorkerService(client.bus, ThreadExecutor(make_env(client.settings, "w1"), threads=2))
        worker.start()
        try:
            first = Engine(client.settings, store=client.store, bus=client.bus, worker=False).start()
            run = client.submit(once.many, {"n": n, "seconds": 0.0, "ledger": str(ledger)})
            _step_until(worker, lambda: count_starts(ledger) >= 3, "a few executions")
            dead = _crash(first)
            _step_until(worker, lambda: count_starts(ledger) >= n and worker.executor.active == 0,
                        "the workers to finish everything dispatched")
            assert {a.state for a in run.activities() if a.task_name == "counted"} & {"dispatched", "running"}
            client.store.release_controller_lease(dead.owner)
            with Engine(client.settings, store=client.store, bus=client.bus, worker=False):
                _step_until(worker, lambda: client.store.get_run(run.id).state == "succeeded", "the run to end")
        finally:
            worker.close()
        counted = [a for a in run.activities() if a.task_name == "counted"]
        assert len(counted) == n and {(a.state, a.attempt) for a in counted} == {("succeeded", 1)}
    runs = read_ledger(ledger)
    assert sorted(len(v) for v in runs.values()) == [1] * n, "an activity ran twice"


def test_pause_holds_the_bus_before_the_store_says_paused(tmp_path: Path) -> None:
    """What ``skyweave pause`` waits for (the run ``paused`` in the store) is written only once the
    run's dispatches on the bus can no longer be claimed: withdrawn if no worker had them, held if
    one had taken them ahead."""
    store = str(tmp_path / "st")
    with Client(store, engine=False, bus="memory://") as client:
        service = ControllerService(client.store, client.bus)
        service.start()
        run = client.submit(mini_xray.backlog, {"n": 4, "seconds": 0.01})
        while not [a for a in run.activities() if a.state == "dispatched"]:
            service.step(wait=0.0)
        ahead = client.bus.claim("w", 1, 60.0)  # a worker took one ahead, not started yet
        assert len(ahead) == 1
        seen: list[tuple[list[str], int]] = []
        apply = client.store.apply

        def watching(changes: Any) -> None:
            if any(r.state == "paused" for r in changes.runs):
                seen.append((client.bus.held([ahead[0].id]), len(client.bus.claim("other", 10, 60.0))))
            apply(changes)

        client.store.apply = watching  # type: ignore[method-assign]
        request = m.RunControlRequested(run_id=run.id, action="pause", at=time.time())
        client.bus.publish([m.encode_message(new_id("evt"), request)])
        while run.status != "paused":
            service.step(wait=0.0)
        assert seen == [([ahead[0].id], 0)], "held and nothing claimable before the store said paused"
        service.stop()


def test_a_second_controller_stands_by_and_one_that_lost_the_lease_stops(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(str(tmp_path / "st"))
    bus = open_bus(f"sqlite:///{tmp_path / 'bus.db'}")
    try:
        active = ControllerService(store, bus)
        active.start()
        standby = ControllerService(store, bus)
        stop = threading.Event()
        stop.set()  # one look at the lease, then asked to stop: it waited, it did not take over
        with caplog.at_level(logging.INFO, logger="skyweave.controller.service"):
            assert not standby.stand_by(stop)
        assert f"standby: controller {active.owner} holds the lease" in caplog.text
        assert store.controller_lease_holder()[0] == active.owner  # type: ignore[index]
        # the active one freezes past its lease; the standby takes over on its next look
        assert store.acquire_controller_lease(active.owner, 1.0, time.time() - 10)
        assert standby.stand_by(threading.Event())
        active.lease_renew_s = 0.0  # renew at its next step: it finds the lease gone and stops
        with pytest.raises(LeaseLostError, match=f"held by {standby.owner}"):
            active.step(wait=0.0)
        standby.start()
        standby.step(wait=0.0)
        active.stop()  # releases nothing it does not hold
        assert store.controller_lease_holder()[0] == standby.owner  # type: ignore[index]
        standby.stop()
    finally:
        bus.close()
        store.close()
