"""Store contract, retention part: ``prune_trigger_firings`` deletes old ledger rows of triggers
whose sources never replay an event, in batches, and keeps what dedupe still needs: held rows,
recent rows, and every row of files and objects triggers (issue 13, point 3)."""

from __future__ import annotations

import msgspec

from skyweave.model.records import RunRecord
from skyweave.model.triggers import Firing, FiringState, TriggerKind, TriggerSpec
from skyweave.store import Store

DAY = 86_400.0
NOW = 1_800_000_000.0
CLOCK = TriggerSpec(name="nightly", kind=TriggerKind.SCHEDULE, workflow="wf.py:w", source={"cron": "0 3 * * *"})
FILES = TriggerSpec(name="arrivals", kind=TriggerKind.FILES, workflow="wf.py:w", source={"folder": "/in"})


def firing(spec: TriggerSpec, key: str, age_days: float, state: FiringState = FiringState.FIRED,
           run_id: str | None = None) -> Firing:
    at = NOW - age_days * DAY
    return Firing(trigger=spec.name, key=key, state=state, at=at, recorded_at=at, fields={}, run_id=run_id)


def test_old_ledger_rows_go_in_batches_and_what_dedupe_needs_stays(store: Store) -> None:
    store.save_trigger(CLOCK)
    store.save_trigger(FILES)
    old = [firing(CLOCK, f"tick-{i}", 100 + i / 10) for i in range(25)]
    store.record_firings("nightly", [*old, firing(CLOCK, "tick-new", 1, run_id="r-new"),
                                     firing(CLOCK, "tick-held", 200, FiringState.HELD)],
                         [RunRecord(id="r-new", workflow="w", state="submitted", created_at=NOW)])
    store.record_firings("arrivals", [firing(FILES, "a.fits|1|1", 400)])

    assert store.prune_trigger_firings(NOW - 90 * DAY, dry_run=True) == {"nightly": 25}
    assert store.trigger_counts("nightly") == {"fired": 26, "held": 1}
    assert store.prune_trigger_firings(NOW - 90 * DAY, batch=10) == {"nightly": 25}  # 3 batches

    assert {f.key for f in store.trigger_history("nightly")} == {"tick-new", "tick-held"}
    assert store.known_keys("arrivals", ["a.fits|1|1"]) == {"a.fits|1|1"}  # a file still in place
    assert store.prune_trigger_firings(NOW - 90 * DAY) == {}
    assert store.get_run("r-new").workflow == "w"  # runs are provenance: never pruned


def test_a_removed_triggers_kept_ledger_stays(store: Store) -> None:
    store.save_trigger(CLOCK)
    store.record_firings("nightly", [firing(CLOCK, "tick-1", 300)])
    store.remove_trigger("nightly")  # without forget: added again, it must not fire tick-1 again
    assert store.prune_trigger_firings(NOW) == {}
    store.save_trigger(msgspec.structs.replace(CLOCK))
    assert store.known_keys("nightly", ["tick-1"]) == {"tick-1"}
