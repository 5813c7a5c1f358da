"""Worker liveness in the pure core: a silent worker is judged dead after ``worker_timeout_s`` of
its silence (by the controller's clock, fed as ``now``), its work runs again as new attempts with
the reason recorded; a slow worker that keeps sending heartbeats keeps its work."""

from __future__ import annotations

from skyweave.controller.decisions import BusRestored, Recovered, RunRestored, WorkerLost
from skyweave.controller.liveness import MAX_LOSSES
from skyweave.model import messages as m
from tests.unit.controller import flows
from tests.unit.controller.harness import World

TIMEOUT = 5.0


def _beat(w: World, worker: str = "w1", slots: int = 2) -> None:
    w.feed(m.WorkerHeartbeat(worker=worker, slots=slots))


def _two_dispatched() -> tuple[World, str, list[m.DispatchActivity]]:
    """Two ``square`` activities dispatched; worker w1 holds both and has started the first."""
    w = World(worker_timeout_s=TIMEOUT)
    run = w.submit(flows.fan, {"n": 2})
    w.step()  # items -> two squares dispatched
    held = list(w.queue)
    assert [d.task.name for d in held] == ["square", "square"]
    w.queue.clear()
    _beat(w)
    w.feed(m.ActivityStarted(activity_id=held[0].activity_id, attempt=1, worker="w1", host="h1", at=w.now))
    return w, run, held


def test_a_silent_worker_is_judged_dead_at_the_timeout_and_its_work_runs_again_as_new_attempts() -> None:
    w, run, held = _two_dispatched()
    start = w.now
    w.fire_timers(start + TIMEOUT - 0.1)
    assert w.reclaimed == [], "judged dead before the timeout"
    w.fire_timers(start + TIMEOUT)
    assert w.reclaimed == ["w1"]
    assert w.queue == [], "nothing runs again before the shell has taken it back from the bus"
    w.feed(WorkerLost(worker="w1", dispatches=[m.dispatch_id(d.activity_id, 1) for d in held]))
    assert sorted((d.activity_id, d.attempt) for d in w.queue) == sorted((d.activity_id, 2) for d in held)
    running, waiting = (w.attempts[(d.activity_id, 1)] for d in held)
    assert running.state == waiting.state == "lost"
    assert running.worker == "w1" and running.started_at is not None and running.ended_at == w.now
    assert running.error is not None and "while it ran" in running.error["message"]
    assert "5.0 s" in running.error["message"] and "runs again as the next attempt" in running.error["message"]
    assert waiting.error is not None and "before it reported a start" in waiting.error["message"]
    w.drain()
    assert w.run_state(run) == "succeeded"
    for d in held:
        act = w.activities[d.activity_id]
        assert (act.state, act.attempt) == ("succeeded", 2)
        assert act.max_attempts == 2, "a lost attempt does not use up the task's retries"


def test_a_slow_worker_that_keeps_sending_heartbeats_keeps_its_work() -> None:
    w, run, held = _two_dispatched()
    for _ in range(60):  # a minute of work, a heartbeat every second
        w.fire_timers(w.now + 1.0)
        _beat(w)
    assert w.reclaimed == []
    w.feed(*[w.outcome(d) for d in held])
    w.drain()
    assert w.run_state(run) == "succeeded"
    assert all(w.activities[d.activity_id].attempt == 1 for d in held)
    assert all(row.state == "succeeded" for row in w.attempts.values())


def test_only_the_silent_worker_is_judged_dead() -> None:
    w, _, _ = _two_dispatched()
    _beat(w, "w2")
    for _ in range(10):
        w.fire_timers(w.now + 1.0)
        _beat(w, "w2")
    assert w.reclaimed == ["w1"]
    assert w.core.window() == 256  # the default window; w2's two slots alone do not widen it
    assert w.core.live.slots() == 2


def test_a_late_report_of_a_lost_attempt_is_recorded_and_not_used() -> None:
    w, run, held = _two_dispatched()
    w.fire_timers(w.now + TIMEOUT)
    w.feed(WorkerLost(worker="w1", dispatches=[m.dispatch_id(held[0].activity_id, 1)]))
    # the "dead" worker was only slow: its outcome of attempt 1 arrives after all
    w.feed(m.ActivityFinished(activity_id=held[0].activity_id, attempt=1, worker="w1", result=-999,
                              started_at=w.now - 6, at=w.now))
    row = w.attempts[(held[0].activity_id, 1)]
    assert row.state == "succeeded"
    assert row.error is not None and "judged lost" in row.error["message"] and "not used" in row.error["message"]
    assert w.activities[held[0].activity_id].state == "dispatched"
    w.queue = [d for d in w.queue if d.attempt == 2] + [held[1]]
    w.drain()
    assert w.run_state(run) == "succeeded"
    assert w.acts("total")[0].result == 0 + 1, "the late result reached nothing"


def test_an_activity_lost_too_often_fails_with_the_reason() -> None:
    w, run, held = _two_dispatched()
    aid = held[0].activity_id
    for attempt in range(1, MAX_LOSSES + 2):
        w.feed(m.ActivityReturned(activity_id=aid, attempt=attempt, worker="w9", reason="test"))
    act = w.activities[aid]
    assert act.state == "failed"
    assert act.error is not None and f"lost {MAX_LOSSES + 1} times" in act.error["message"]
    assert len([r for (a, _), r in w.attempts.items() if a == aid and r.state == "lost"]) == MAX_LOSSES + 1
    w.feed(w.outcome(held[1]))
    w.drain()
    assert w.run_state(run) == "failed"


def test_a_dispatch_handed_back_runs_again_as_the_next_attempt() -> None:
    w, _, held = _two_dispatched()
    w.feed(m.ActivityReturned(activity_id=held[1].activity_id, attempt=1, worker="w2",
                              reason="delivered 2 times"))
    assert [(d.activity_id, d.attempt) for d in w.queue] == [(held[1].activity_id, 2)]
    row = w.attempts[(held[1].activity_id, 1)]
    assert row.state == "lost" and row.error is not None and "handed it back: delivered 2 times" in row.error["message"]
    # a duplicate of the hand-back changes nothing
    w.feed(m.ActivityReturned(activity_id=held[1].activity_id, attempt=1, worker="w2", reason="again"))
    assert len(w.queue) == 1


def test_after_a_restart_what_the_bus_lost_runs_again_and_holders_are_watched() -> None:
    w, run, held = _two_dispatched()
    restored = World(worker_timeout_s=TIMEOUT)
    restored.now = w.now + 30
    restored.tasks = w.tasks
    for t in w.tasks.values():
        restored.core.register_task(t.spec, current=True)
    restored.feed(RunRestored(run=w.runs[run], activities=list(w.activities.values()), products=[]))
    assert restored.queue == [], "nothing in flight is sent again before the bus is asked"
    # the bus still holds the first dispatch (a worker runs it); the second was lost with it
    restored.feed(Recovered(present=[m.dispatch_id(held[0].activity_id, 1)], holders=["w1"]))
    assert [(d.activity_id, d.attempt) for d in restored.queue] == [(held[1].activity_id, 2)]
    row = restored.attempts[(held[1].activity_id, 1)]
    assert row.state == "lost" and row.error is not None and "not on the bus" in row.error["message"]
    # w1, which holds the first, is never heard from: judged dead one timeout after the restart
    restored.fire_timers(restored.now + TIMEOUT)
    assert restored.reclaimed == ["w1"]


def test_a_controller_behind_on_the_bus_judges_by_the_order_heartbeats_were_sent() -> None:
    """Reading a backlog, the controller's clock says nothing (every heartbeat read is old): a
    worker is dead once the others' heartbeats sent a timeout after its last one have been read."""
    w = World(worker_timeout_s=TIMEOUT)
    sent = 5000.0
    w.feed(m.WorkerHeartbeat(worker="w1", slots=2, at=sent), m.WorkerHeartbeat(worker="w2", slots=2, at=sent))
    for i in range(1, 5):  # all read in the same instant of the controller's clock
        w.feed(m.WorkerHeartbeat(worker="w2", slots=2, at=sent + i),
               m.WorkerHeartbeat(worker="w3", slots=2, at=sent + i))
        w.feed(m.WorkerHeartbeat(worker="w1", slots=2, at=sent + i - 0.5))  # a slow one, still beating
    assert w.reclaimed == []
    w.feed(m.WorkerHeartbeat(worker="w2", slots=2, at=sent + 8.6))  # w1's last: +3.5, w3's: +4
    assert w.reclaimed == ["w1"]
    assert w.core.live.workers.keys() == {"w2", "w3"}


def test_silence_while_the_bus_was_unreachable_does_not_count_against_the_workers() -> None:
    """Redis restarted: for the outage nobody could send a heartbeat.  Once the bus is back
    (``BusRestored``), each worker has a whole timeout to be heard from again — by the clock and
    by order: the first heartbeats read after the outage do not condemn the workers still
    reconnecting.  One that stays silent a whole timeout after the outage is dead as before."""
    w = World(worker_timeout_s=TIMEOUT)
    sent = w.now
    w.feed(m.WorkerHeartbeat(worker="w1", slots=2, at=sent), m.WorkerHeartbeat(worker="w2", slots=2, at=sent))
    w.now = sent + 3 * TIMEOUT  # the outage: nothing read, nothing sent
    w.feed(BusRestored())
    w.feed(m.WorkerHeartbeat(worker="w2", slots=2, at=w.now + 0.5))  # w2 reconnected first
    w.feed(m.WorkerHeartbeat(worker="w1", slots=2, at=sent + 0.1))   # w1's beat from before, read late
    w.fire_timers(w.now + TIMEOUT - 0.1)
    assert w.reclaimed == [], "nobody judged dead for the outage"
    w.feed(m.WorkerHeartbeat(worker="w1", slots=2, at=w.now), m.WorkerHeartbeat(worker="w2", slots=2, at=w.now))
    assert w.reclaimed == []
    w.fire_timers(w.now + TIMEOUT - 0.5)
    w.feed(m.WorkerHeartbeat(worker="w2", slots=2, at=w.now))
    w.fire_timers(w.now + 1.0)
    assert w.reclaimed == ["w1"], "silent a whole timeout after the outage: dead"


def test_the_image_digest_is_recorded_per_attempt_and_never_carried_into_the_next() -> None:
    """The container image an attempt ran in (``image_digest``) is on its attempt row and on the
    activity, from its start or its end report; an attempt whose start was never seen does not
    inherit the previous one's."""
    w, _run, held = _two_dispatched()
    first, second = (f"sha256:{c * 64}" for c in "ab")
    started, unstarted = held
    w.feed(m.ActivityFinished(activity_id=started.activity_id, attempt=1, worker="w1", result=1, at=w.now,
                              image_digest=second))  # its start named no image, its end does
    assert w.attempts[(started.activity_id, 1)].image_digest == second
    assert w.activities[started.activity_id].image_digest == second
    w.feed(m.ActivityStarted(activity_id=unstarted.activity_id, attempt=1, worker="w1", host="h1", at=w.now,
                             image_digest=first))
    assert w.attempts[(unstarted.activity_id, 1)].image_digest == first
    assert w.activities[unstarted.activity_id].image_digest == first
    w.fire_timers(w.now + TIMEOUT)  # w1 falls silent: the attempt is lost and runs again
    w.feed(WorkerLost(worker="w1", dispatches=[m.dispatch_id(unstarted.activity_id, 1)]))
    assert w.attempts[(unstarted.activity_id, 1)].image_digest == first  # the lost attempt keeps it
    assert [(d.activity_id, d.attempt) for d in w.queue] == [(unstarted.activity_id, 2)]
    w.feed(m.ActivityFinished(activity_id=unstarted.activity_id, attempt=2, worker="w2", result=1,
                              at=w.now))  # on the host this time, its start never seen
    assert w.attempts[(unstarted.activity_id, 2)].image_digest is None
    assert w.activities[unstarted.activity_id].image_digest is None
