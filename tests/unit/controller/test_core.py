"""The controller's pure core: events in, decisions out; no I/O, no sleeps."""

from __future__ import annotations

import itertools

import pytest

from skyweave.controller.decisions import RetryLoaded, RunRestored
from skyweave.model import messages as m
from tests.unit.controller import flows
from tests.unit.controller.harness import World


def test_unknown_fanout_and_gather() -> None:
    w = World()
    run = w.submit(flows.fan, {"n": 7})
    w.drain()
    assert w.run_state(run) == "succeeded"
    assert len(w.acts("square")) == 7
    assert [a.result for a in w.acts("total")] == [sum(i * i for i in range(7))]


def test_gather_of_empty_fanout_runs_with_empty_list() -> None:
    w = World()
    run = w.submit(flows.fan, {"n": 0})
    w.drain()
    assert w.run_state(run) == "succeeded"
    assert w.acts("square") == []
    assert [a.result for a in w.acts("total")] == [0]


def test_nested_fanout_expands_each_level_and_gathers_all() -> None:
    w = World()
    run = w.submit(flows.nested, {"n": 4})
    w.drain()
    assert w.run_state(run) == "succeeded"
    # items 0..3 split into 0+1+2+3 = 6 leaves, squares of range(x) for each x
    assert len(w.acts("square")) == 6
    expected = sum(j * j for x in range(4) for j in range(x))
    assert [a.result for a in w.acts("total")] == [expected]
    keys = sorted(a.key for a in w.acts("square"))
    assert keys == ["1.0", "2.0", "2.1", "3.0", "3.1", "3.2"]


def test_fanout_over_a_non_list_fails_with_a_clear_reason() -> None:
    w = World()
    run = w.submit(flows.bad_fanout, {"n": 3})
    w.drain()
    assert w.run_state(run) == "failed"
    (src,) = w.acts("not_a_list")
    assert src.state == "failed"
    assert "not a list" in src.error["message"]


def test_condition_skips_and_gather_ignores_skipped() -> None:
    w = World()
    run = w.submit(flows.conditional, {"n": 4})  # squares 0 1 4 9 -> only 9 > 4
    w.drain()
    assert w.run_state(run) == "succeeded"
    second = [a for a in w.acts("square") if a.node == "square_2"]
    assert sorted(a.state for a in second) == ["skipped", "skipped", "skipped", "succeeded"]
    # the skipped rows say why: the condition, as written in the workflow
    assert {a.error["message"] for a in second if a.state == "skipped"} == {"its condition square > 4 was false"}
    assert [a.result for a in second if a.state == "succeeded"] == [81]
    assert [a.result for a in w.acts("total")] == [81]


@pytest.mark.parametrize(("n", "extra"), [(4, None), (5, 30)])
def test_gather_of_a_single_activity_is_an_optional_input(n: int, extra: int | None) -> None:
    # squares of range(4) sum to 14 (extra skipped: [] is passed), of range(5) to 30 (extra ran)
    w = World()
    run = w.submit(flows.optional_input, {"n": n})
    w.drain()
    assert w.run_state(run) == "succeeded"
    (opt,) = [a for a in w.acts("total") if a.node != "total"]
    assert opt.state == ("skipped" if extra is None else "succeeded")
    if extra is None:
        assert opt.error["message"] == "its condition total > 20 was false"
    (summed,) = w.acts("optional_sum")
    assert summed.state == "succeeded"
    base = sum(i * i for i in range(n))
    assert summed.result == {"total": base + (extra or 0), "got": 0 if extra is None else 1}


def test_bounded_loop_stops_when_converged() -> None:
    w = World()
    run = w.submit(flows.converge, {"start": 8.0})
    w.drain()
    assert w.run_state(run) == "succeeded"
    iterations = sorted(w.acts("halve"), key=lambda a: a.iteration)
    # 8 -> 4 -> 2 -> 1 (delta 0.5 < 1): four iterations, each the parent of the next
    assert [a.result["value"] for a in iterations] == [8.0, 4.0, 2.0, 1.0]
    assert all(b.parent_activity == a.id for a, b in itertools.pairwise(iterations))


def test_bounded_loop_stops_at_max_iterations() -> None:
    w = World()
    run = w.submit(flows.converge, {"start": 1e9, "max_iterations": 3})
    w.drain()
    assert w.run_state(run) == "succeeded"
    iterations = w.acts("halve")
    assert len(iterations) == 3
    last = max(iterations, key=lambda a: a.iteration)
    assert "no convergence in 3" in last.error["message"]


def test_backtrack_runs_one_provider_for_all_waiting_activities() -> None:
    w = World()
    w.register(flows.make_aux)
    run = w.submit(flows.backtracking, {"n": 3})
    w.drain()
    assert w.run_state(run) == "succeeded"
    providers = w.acts("make_aux")
    assert len(providers) == 1, "three activities missing the same aux share one provider"
    assert providers[0].arguments == {"obs_id": "o1", "window": 100.0}
    for act in w.acts("needs_aux"):
        assert act.result == "used 100.0"
        kinds = [d.kind for d in act.detours]
        assert kinds[:2] == ["lookup", "provide"]
        assert act.detours[1].provider_activity == providers[0].id


def test_backtrack_prefers_an_existing_product() -> None:
    w = World()
    w.register(flows.make_aux)
    w.store_products.append(_aux_record("prd-existing", "o1", 5.0))
    run = w.submit(flows.backtracking, {"n": 1})
    w.drain()
    assert w.run_state(run) == "succeeded"
    assert w.acts("make_aux") == []
    (act,) = w.acts("needs_aux")
    assert act.result == "used 5.0"
    assert [d.kind for d in act.detours] == ["lookup", "found"]


def test_missing_input_without_policy_fails_clearly() -> None:
    w = World()
    run = w.submit(flows.unanswered)
    w.drain()
    assert w.run_state(run) == "failed"
    (act,) = w.acts("never_provided")
    assert "missing" in act.error["message"]
    assert "providers=" in act.error["hint"]


def test_parked_activity_wakes_on_product_registration() -> None:
    w = World()
    run = w.submit(flows.parking)
    w.drain()
    (act,) = w.acts("parks")
    assert act.state == "parked"
    assert w.run_state(run) == "running"
    # an unrelated product does not wake it
    w.feed(m.ProductRegistered(product=m.NewProduct(id="prd-other", uri="x", type="aux", obs_id="o2")))
    assert w.activities[act.id].state == "parked"
    w.feed(m.ProductRegistered(product=m.NewProduct(id="prd-aux", uri="x", type="aux", obs_id="o1")))
    assert w.activities[act.id].state == "queued" or w.queue
    w.drain()
    assert w.activities[act.id].result == "woken"
    assert w.run_state(run) == "succeeded"
    assert [d.kind for d in w.activities[act.id].detours] == ["lookup", "park", "woken"]
    woken = w.activities[act.id].detours[-1]
    assert woken.product_id == "prd-aux"
    assert woken.reason.startswith("prd-aux was registered, matching {'obs_id': 'o1'}"), woken.reason


def test_parked_activity_fails_at_its_deadline() -> None:
    w = World()
    run = w.submit(flows.parking)
    w.drain()
    (act,) = w.acts("parks")
    w.fire_timers(w.now + 59)
    assert w.activities[act.id].state == "parked"
    w.fire_timers(w.now + 2)
    assert w.activities[act.id].state == "failed"
    assert "deadline passed" in w.activities[act.id].error["message"]
    deadline = w.activities[act.id].detours[-1]
    assert deadline.kind == "deadline" and deadline.reason == w.activities[act.id].error["message"]
    assert deadline.product_type == "aux" and "aux matching {'obs_id': 'o1'}" in deadline.reason, deadline
    assert w.run_state(run) == "failed"


def test_retry_with_backoff_then_success() -> None:
    flows.FLAKY.clear()
    w = World()
    run = w.submit(flows.retrying, {"key": "a", "fail_times": 2})
    w.drain()
    (act,) = w.acts("flaky")
    assert act.state == "retry_wait"
    assert w.timers[0][0] == pytest.approx(w.now + 5.0)
    w.fire_timers(w.now + 5.0)
    w.drain()
    assert w.activities[act.id].state == "retry_wait"
    assert w.timers[0][0] == pytest.approx(w.now + 10.0)  # exponential backoff
    w.fire_timers(w.now + 10.0)
    w.drain()
    assert w.activities[act.id].state == "succeeded"
    assert w.activities[act.id].attempt == 3
    assert w.run_state(run) == "succeeded"


def test_retries_exhausted_fail_the_run() -> None:
    flows.FLAKY.clear()
    w = World()
    run = w.submit(flows.retrying, {"key": "b", "fail_times": 10})
    for _ in range(3):
        w.drain()
        w.fire_timers(w.now + 100)
    w.drain()
    (act,) = w.acts("flaky")
    assert act.state == "failed"
    assert "gave up after 3 attempts" in act.error["message"]
    assert w.run_state(run) == "failed"


def test_duplicate_and_stale_reports_are_ignored() -> None:
    w = World()
    run = w.submit(flows.fan, {"n": 2})
    first = w.queue[0]
    outcome = w.outcome(first)
    w.queue.clear()
    w.feed(outcome)
    created = len(w.acts("square"))
    w.feed(outcome)  # the same report again (redelivered event)
    assert len(w.acts("square")) == created
    stale = m.ActivityFailed(activity_id=first.activity_id, attempt=first.attempt, message="late")
    w.feed(stale)
    assert w.activities[first.activity_id].state == "succeeded"
    w.drain()
    assert w.run_state(run) == "succeeded"


def test_urgent_run_overtakes_queued_work_but_not_running() -> None:
    w = World(default_window=2)
    slow = w.submit(flows.many, {"n": 10})
    w.step()  # items -> 10 jobs created, 2 dispatched (window 2)
    assert len(w.queue) == 2
    urgent = w.submit(flows.many, {"n": 1}, priority=10)
    w.step(2)  # the two running normal jobs finish
    w.step()   # urgent 'items' is dispatched before the 8 queued normal jobs
    order = [(d.run_id, d.task.name) for d in w.dispatch_log]
    first_urgent_job = order.index((urgent, "job"))
    normal_jobs_before = sum(1 for r, t in order[:first_urgent_job] if r == slow and t == "job")
    assert normal_jobs_before <= 4, order
    w.drain()
    assert w.run_state(urgent) == "succeeded"
    assert w.run_state(slow) == "succeeded"


def test_aging_effective_priority_in_queue() -> None:
    from skyweave.controller.queue import ReadyQueue

    q = ReadyQueue(aging_s=10.0)
    q.push("old-low", 0, queued_at=0.0)
    q.push("new-high", 5, queued_at=100.0)
    # at t=100 the low one has waited 100 s -> effective 10 > 5
    assert q.pop(100.0) == "old-low"
    assert q.pop(100.0) == "new-high"
    q.push("a", 1, 0.0)
    q.push("b", 1, 0.0)
    q.push("c", 3, 0.0)
    assert [q.pop(0.0), q.pop(0.0), q.pop(0.0)] == ["c", "a", "b"]


def test_priority_change_of_queued_run() -> None:
    w = World(default_window=1)
    a = w.submit(flows.many, {"n": 3})
    b = w.submit(flows.many, {"n": 3})
    w.feed(m.PriorityChangeRequested(priority=9, run_id=b))
    w.drain()
    jobs = [d.run_id for d in w.dispatch_log if d.task.name == "job"]
    assert jobs == [b, b, b, a, a, a], "b's work (created later, inheriting 9) overtakes a's"
    assert all(act.priority == 9 for act in w.acts() if act.run_id == b)


def test_pause_holds_and_resume_releases() -> None:
    w = World()
    run = w.submit(flows.fan, {"n": 3})
    w.feed(m.RunControlRequested(run_id=run, action="pause"))
    w.step()  # items finishes; its squares are created but held
    assert w.queue == []
    assert w.run_state(run) == "paused"
    w.feed(m.RunControlRequested(run_id=run, action="resume"))
    assert len(w.queue) == 3
    w.drain()
    assert w.run_state(run) == "succeeded"


def test_cancel_drops_queued_work() -> None:
    w = World(default_window=1)
    run = w.submit(flows.fan, {"n": 5})
    w.step()
    d = w.feed(m.RunControlRequested(run_id=run, action="cancel"))
    assert w.run_state(run) == "cancelled"
    assert d.withdraw, "the dispatched activity is withdrawn from the bus"
    assert all(a.state in ("succeeded", "cancelled") for a in w.acts())


def test_retry_of_failed_activity_reopens_run() -> None:
    flows.FLAKY.clear()
    w = World()
    run = w.submit(flows.retrying, {"key": "c", "fail_times": 3})
    for _ in range(3):
        w.drain()
        w.fire_timers(w.now + 100)
    assert w.run_state(run) == "failed"
    (act,) = w.acts("flaky")
    w.feed(RetryLoaded(activity=w.activities[act.id]))
    w.drain()
    assert w.activities[act.id].state == "succeeded"
    assert w.run_state(run) == "succeeded"


def test_retry_of_a_forgotten_run_restores_it_through_handle() -> None:
    flows.FLAKY.clear()
    w = World()
    run = w.submit(flows.retrying, {"key": "d", "fail_times": 3})
    for _ in range(3):
        w.drain()
        w.fire_timers(w.now + 100)
    assert w.run_state(run) == "failed"
    w.core.forget_run(run)  # what the shell does once a run has ended
    (act,) = w.acts("flaky")
    restore = RunRestored(run=w.runs[run], activities=list(w.activities.values()), products=[])
    w.feed(RetryLoaded(activity=w.activities[act.id], restore=restore))
    w.drain()
    assert w.activities[act.id].state == "succeeded"
    assert w.run_state(run) == "succeeded"


def test_an_event_of_unknown_kind_raises() -> None:
    w = World()
    with pytest.raises(TypeError, match="no rule for str events"):
        w.feed("not an event")


def test_new_task_version_is_used_by_later_activities() -> None:
    from skyweave.model.specs import TaskSpec

    w = World(default_window=1)
    run = w.submit(flows.many, {"n": 3})
    w.step()  # items -> 3 jobs created at version 1
    spec = flows.job.spec
    v2 = TaskSpec(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, "version": "2"})
    w.feed(m.TaskVersionRegistered(task=v2))
    w.drain()
    assert {a.task_version for a in w.acts("job")} == {"1"}, "already created activities keep theirs"
    run2 = w.submit(flows.many, {"n": 2})
    w.drain()
    assert {a.task_version for a in w.acts("job") if a.run_id == run2} == {"2"}
    assert w.run_state(run) == "succeeded"


def test_pinned_run_keeps_its_version() -> None:
    from skyweave.model.specs import TaskSpec

    w = World()
    spec = flows.job.spec
    v2 = TaskSpec(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, "version": "2"})
    w.register(flows.job)
    w.core.register_task(v2, current=True)
    run = w.submit(flows.many, {"n": 2}, pins={"job": "1"})
    w.drain()
    assert {a.task_version for a in w.acts("job")} == {"1"}
    assert w.run_state(run) == "succeeded"


def _aux_record(pid: str, obs_id: str, window: float):  # type: ignore[no-untyped-def]
    from skyweave.model.records import ProductRecord

    return ProductRecord(id=pid, uri=f"mem://{pid}", type="aux", obs_id=obs_id, attributes={"window": window})


def test_nested_fanout_with_a_shallower_each_and_a_map_of_gathers() -> None:
    w = World()
    run = w.submit(flows.per_detector, {"n": 3})
    w.drain()
    assert w.run_state(run) == "succeeded"
    reduced = sorted(a.result for a in w.acts("reduce_frame"))
    assert reduced == ["d0:0", "d1:0", "d1:1", "d2:0", "d2:1", "d2:2"]
    stacks = sorted((a.key, a.result) for a in w.acts("stack"))
    assert stacks == [("0", "d0:0"), ("1", "d1:0+d1:1"), ("2", "d2:0+d2:1+d2:2")]


def test_a_loop_can_be_skipped_by_a_condition() -> None:
    w = World()
    skipped = w.submit(flows.maybe_converge, {"ok": False})
    ran = w.submit(flows.maybe_converge, {"ok": True})
    w.drain()
    assert w.run_state(skipped) == w.run_state(ran) == "succeeded"
    states = {run: [a.state for a in w.acts("halve") if a.run_id == run] for run in (skipped, ran)}
    assert states[skipped] == ["skipped"]
    assert states[ran] == ["succeeded"] * 4


def test_priority_change_reaches_work_already_on_the_bus() -> None:
    w = World(default_window=2)
    run = w.submit(flows.many, {"n": 4})
    w.step()  # items done; two jobs dispatched (window 2), two queued
    on_bus = [a for a in w.acts("job") if a.state == "dispatched"]
    assert len(on_bus) == 2
    d = w.feed(m.PriorityChangeRequested(priority=7, run_id=run))
    assert sorted(d.reprioritize) == sorted((f"{a.id}:{a.attempt}", 7) for a in on_bus)
    assert all(a.priority == 7 for a in w.acts("job"))


def _activity_topics(w: World, activity_id: str) -> list[str]:
    return [m.topic_of(e) for e in w.events_out
            if isinstance(e, m.ActivityStateChanged) and e.activity_id == activity_id]


def test_listeners_hear_the_waits_and_ends_of_an_activity_once_each() -> None:
    flows.FLAKY.clear()
    w = World()
    w.submit(flows.retrying, {"key": "c", "fail_times": 1})
    w.drain()
    w.fire_timers(w.now + 5.0)
    w.drain()
    (act,) = w.acts("flaky")
    assert _activity_topics(w, act.id) == ["activity.retry_wait", "activity.succeeded"]

    w = World()
    w.submit(flows.parking)
    w.drain()
    (parked,) = w.acts("parks")
    w.fire_timers(w.now + 61)
    assert _activity_topics(w, parked.id) == ["activity.backtracking", "activity.parked", "activity.failed"]

    w = World(default_window=1)
    run = w.submit(flows.fan, {"n": 3})
    w.step()
    w.feed(m.RunControlRequested(run_id=run, action="cancel"))
    cancelled = [a for a in w.acts() if a.state == "cancelled"]
    assert cancelled
    assert all(_activity_topics(w, a.id) == ["activity.cancelled"] for a in cancelled)
