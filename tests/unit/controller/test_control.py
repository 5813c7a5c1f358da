"""Pause and cancel reach work already on the bus (issue 18): a paused run's dispatches that no
worker has claimed come back and wait for resume; a paused run with nothing left ends; a
cancelled running attempt's row is closed as cancelled, with the time."""

from __future__ import annotations

from skyweave.controller.decisions import Held
from skyweave.model import messages as m
from tests.unit.controller import flows
from tests.unit.controller.harness import World


def _squares_on_the_bus(n: int) -> tuple[World, str]:
    w = World()
    run = w.submit(flows.fan, {"n": n})
    w.step()  # items ran: its n squares are dispatched, on the bus
    assert [d.task.name for d in w.queue] == ["square"] * n
    return w, run


def test_pause_takes_back_what_no_worker_has_claimed_and_resume_sends_it_again() -> None:
    w, run = _squares_on_the_bus(4)
    d = w.feed(m.RunControlRequested(run_id=run, action="pause"))
    assert sorted(d.hold) == sorted(m.dispatch_id(x.activity_id, 1) for x in w.queue)
    claimed, *unclaimed = w.queue  # a worker had taken the first one already: it runs
    w.queue = [claimed]
    w.feed(Held(dispatches=[m.dispatch_id(x.activity_id, 1) for x in unclaimed]))
    for x in unclaimed:
        act = w.activities[x.activity_id]
        assert (act.state, act.attempt) == ("queued", 0), "back in the controller; its attempt never happened"
    w.step()
    assert w.queue == [], "nothing of a paused run is dispatched"
    assert w.run_state(run) == "paused"
    w.feed(m.RunControlRequested(run_id=run, action="resume"))
    assert sorted((x.activity_id, x.attempt) for x in w.queue) == sorted((x.activity_id, 1) for x in unclaimed)
    w.drain()
    assert w.run_state(run) == "succeeded"
    assert [a.result for a in w.acts("total")] == [0 + 1 + 4 + 9]


def test_held_after_resume_goes_straight_back_to_the_queue() -> None:
    w, run = _squares_on_the_bus(2)
    d = w.feed(m.RunControlRequested(run_id=run, action="pause"))
    w.queue = []
    w.feed(m.RunControlRequested(run_id=run, action="resume"))
    w.feed(Held(dispatches=d.hold))
    assert len(w.queue) == 2
    w.drain()
    assert w.run_state(run) == "succeeded"


def test_a_paused_run_whose_last_work_ends_is_over_not_paused() -> None:
    w, run = _squares_on_the_bus(2)
    w.feed(m.RunControlRequested(run_id=run, action="pause"))  # every square already claimed
    w.step()  # they finish; their total is created, held
    assert w.run_state(run) == "paused"
    w.feed(m.RunControlRequested(run_id=run, action="resume"))
    (total,) = w.queue
    w.feed(m.RunControlRequested(run_id=run, action="pause"))
    w.step()  # the total had been claimed: it finishes while the run is paused
    assert w.run_state(run) == "succeeded", "a paused run with nothing left is not 'paused'"
    assert total.task.name == "total"


def test_cancel_closes_the_attempt_of_running_work_with_the_time() -> None:
    w, run = _squares_on_the_bus(2)
    running, waiting = w.queue
    w.feed(m.ActivityStarted(activity_id=running.activity_id, attempt=1, worker="w1", at=w.now))
    w.now += 5
    w.feed(m.RunControlRequested(run_id=run, action="cancel"))
    row = w.attempts[(running.activity_id, 1)]
    assert (row.state, row.ended_at, row.worker) == ("cancelled", w.now, "w1")
    assert row.error is not None and "was cancelled while it ran" in row.error["message"]
    assert (waiting.activity_id, 1) not in w.attempts, "it never started: no attempt row"
    # the worker's report of the killed activity comes later and changes nothing
    w.now += 1
    w.feed(m.ActivityFailed(activity_id=running.activity_id, attempt=1, message="stopped", retryable=False))
    assert w.attempts[(running.activity_id, 1)].state == "cancelled"
    assert w.activities[running.activity_id].state == "cancelled"


def test_resume_releases_what_workers_were_holding_when_it_was_paused() -> None:
    w, run = _squares_on_the_bus(3)
    paused = w.feed(m.RunControlRequested(run_id=run, action="pause"))
    w.queue = []  # every one had been claimed by a worker (taken ahead, not started)
    resumed = w.feed(m.RunControlRequested(run_id=run, action="resume"))
    assert sorted(resumed.release) == sorted(paused.hold), "given back or not, their hold is lifted"
