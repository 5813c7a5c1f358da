"""Work placed at a site with no live worker (``controller/sitewatch.py``): unpinned work goes to a
site with live workers once ``grace_s`` is over, pinned work waits and says why; all by the
controller's clock, in the pure core."""

from __future__ import annotations

from typing import Any

from skyweave import task, workflow
from skyweave.controller.decisions import Decisions, Recovered, RunRestored, WorkerLost
from skyweave.controller.placement import Sites
from skyweave.controller.sitewatch import MOVED, WAIT
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord
from tests.unit.controller.harness import World

GRACE = 30.0
TIMEOUT = 5.0


@task(version="1")
def anywhere(x: int) -> int:
    return x + 1


@task(version="1", site="east")
def pinned_east(x: int) -> int:
    return x * 2


@workflow
def chain(x: int = 1) -> Any:
    return anywhere(x=anywhere(x=x))


@workflow
def pinned(x: int = 1) -> Any:
    return pinned_east(x=x)


class Sited(World):
    """The harness, also keeping where each dispatch went and what the log was told."""

    def __init__(self) -> None:
        super().__init__(worker_timeout_s=TIMEOUT)
        self.core.sites = Sites(home="east", roots={"east": "/data/east", "west": "/data/west"},
                                grace_s=GRACE)
        self.site_of: dict[str, str] = {}
        self.relocated: list[tuple[str, str]] = []
        self.notices: list[str] = []

    def feed(self, *events: Any) -> Decisions:
        d = super().feed(*events)
        self.site_of.update(d.dispatch_sites)
        self.relocated.extend((mid, site) for mid, _, _, site in d.relocate)
        self.notices.extend(d.notices)
        return d

    def beat(self, *workers: tuple[str, str]) -> None:
        self.feed(*[m.WorkerHeartbeat(worker=w, slots=1, site=site, at=self.now) for w, site in workers])

    def wait(self, seconds: float, *alive: tuple[str, str]) -> None:
        """``seconds`` pass with the ``alive`` workers beating every second and due timers fired."""
        end = self.now + seconds
        while self.now < end:
            self.fire_timers(min(self.now + 1.0, end))
            if alive:
                self.beat(*alive)

    def only(self) -> ActivityRecord:
        [rec] = [a for a in self.activities.values() if a.state == "dispatched"]
        return rec


WEST = ("w-west", "west")
EAST = ("w-east", "east")


def test_unpinned_work_at_a_site_without_live_workers_moves_after_the_grace_time() -> None:
    w = Sited()
    w.beat(WEST)
    w.submit(chain, {"x": 1})
    rec = w.only()
    mid = m.dispatch_id(rec.id, 1)
    assert w.site_of[mid] == "east", "placed at home: no input is located anywhere"
    w.wait(GRACE - 1.0, WEST)
    assert w.relocated == [] and not w.activities[rec.id].detours, "within the grace time it waits"
    w.wait(1.0, WEST)
    assert w.relocated == [(mid, "west")]
    [moved] = w.activities[rec.id].detours
    assert (moved.kind, moved.param) == (MOVED, "west")
    assert "site east has had no live worker for 30 s" in moved.reason and "moved to site west" in moved.reason
    assert len(w.notices) == 1 and "site east" in w.notices[0]
    # the next activity is placed at the site that is down: it goes to west at once
    w.step()
    nxt = w.only()
    assert w.site_of[m.dispatch_id(nxt.id, 1)] == "west"
    assert [d.kind for d in w.activities[nxt.id].detours] == [MOVED]
    assert len(w.notices) == 1, "the log is told once per site, not once per activity"


def test_pinned_work_waits_for_its_site_and_says_so_until_it_starts() -> None:
    w = Sited()
    w.beat(WEST)
    w.submit(pinned, {"x": 1})
    rec = w.only()
    w.wait(GRACE + 5.0, WEST)
    assert w.relocated == [], "a pinned task never runs elsewhere"
    [waits] = w.activities[rec.id].detours
    assert (waits.kind, waits.param, waits.ended_at) == (WAIT, "east", None)
    assert "waits for a worker of site east" in waits.reason and "pinned to site east" in waits.reason
    assert "skyweave worker --site east" in waits.reason
    assert len(w.notices) == 1 and "waits for a worker of site east" in w.notices[0]
    w.wait(GRACE, WEST)
    assert len(w.activities[rec.id].detours) == 1 and len(w.notices) == 1, "said once"
    w.beat(EAST)
    w.feed(m.ActivityStarted(activity_id=rec.id, attempt=1, worker="w-east", host="h", at=w.now))
    [waits] = w.activities[rec.id].detours
    assert waits.ended_at == w.now, "the wait is over once a worker of the site started it"


def test_work_of_a_site_whose_workers_died_moves_once_the_grace_time_after_their_death_is_over() -> None:
    w = Sited()
    w.beat(EAST, WEST)
    w.submit(chain, {"x": 1})
    rec = w.only()
    mid = m.dispatch_id(rec.id, 1)
    assert w.site_of[mid] == "east"
    heard = w.now
    w.wait(TIMEOUT + 1.0, WEST)  # east goes silent: judged dead at the timeout
    assert w.reclaimed == ["w-east"]
    w.feed(WorkerLost(worker="w-east", dispatches=[]))  # it had not claimed this one
    w.wait(heard + TIMEOUT + GRACE - 0.5 - w.now, WEST)
    assert w.relocated == [], "the grace time counts from when the site's last worker was judged silent"
    w.wait(1.0, WEST)
    assert w.relocated == [(mid, "west")]


def test_unpinned_work_waits_when_no_other_site_is_alive_and_moves_when_one_is() -> None:
    w = Sited()
    w.submit(chain, {"x": 1})
    rec = w.only()
    mid = m.dispatch_id(rec.id, 1)
    w.wait(GRACE + 1.0)
    assert w.relocated == []
    [waits] = w.activities[rec.id].detours
    assert waits.kind == WAIT and "no other site has a live worker" in waits.reason
    w.beat(WEST)
    w.fire_timers(w.now)
    assert w.relocated == [(mid, "west")], "moved as soon as a worker of another site is heard"
    waited, moved = w.activities[rec.id].detours
    assert waited.ended_at is not None and moved.kind == MOVED


def test_work_at_a_live_site_or_without_sites_is_not_watched() -> None:
    w = Sited()
    w.beat(EAST)
    w.submit(chain, {"x": 1})
    w.wait(3 * GRACE, EAST)
    assert w.relocated == [] and w.notices == [] and not w.only().detours
    plain = World(worker_timeout_s=TIMEOUT)
    plain.submit(chain, {"x": 1})
    assert plain.core.sitewatch.placed == {}, "no sites: nothing placed, nothing watched"


def test_after_a_restart_dispatches_still_on_the_bus_are_watched_for_their_site() -> None:
    w = Sited()
    w.beat(EAST, WEST)
    run = w.submit(chain, {"x": 1})
    rec = w.only()
    mid = m.dispatch_id(rec.id, 1)
    restored = Sited()
    restored.now = w.now + 60
    restored.tasks = w.tasks
    for t in w.tasks.values():
        restored.core.register_task(t.spec, current=True)
    restored.feed(RunRestored(run=w.runs[run], activities=list(w.activities.values()), products=[]))
    restored.feed(Recovered(present=[mid], holders=[]))
    assert restored.core.sitewatch.placed[rec.id].site == "east", "watched again, where it was placed"
    restored.beat(WEST)  # east is never heard from again
    restored.wait(GRACE - 1.0, WEST)
    assert restored.relocated == []
    restored.wait(1.0, WEST)
    assert restored.relocated == [(mid, "west")]
    [moved] = restored.activities[rec.id].detours
    assert moved.kind == MOVED
