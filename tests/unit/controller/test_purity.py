"""The core is a function of its events: the same events at the same times, given to controllers
with the same id mint, give the same decisions — ids, dispatch messages, timers, rows and all.

Recorded from one run through fan-out, backtracking (a provider), retries with backoff timers and
a retry of a forgotten run, then replayed into a fresh controller.  With ids made from the clock
and a random source inside ``handle`` (as before), the replay's ids differ and this fails.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import msgspec

from skyweave.controller.core import Controller
from skyweave.controller.decisions import Decisions, RetryLoaded, RunRestored
from skyweave.model.ids import IdMint
from tests.unit.controller import flows
from tests.unit.controller.harness import World

CORE = Path(__file__).parents[3] / "src" / "skyweave" / "controller"
SHELL = {"service.py", "reuse.py", "lease.py", "prune.py"}
"""The I/O shell of the controller package: the rest is the pure core."""


class Recording(World):
    """A ``World`` that keeps every batch it gives the core and every decision it gets back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[tuple[list[Any], float]] = []
        self.decisions: list[Any] = []
        handle = self.core.handle

        def recorded(events: list[Any], now: float) -> Decisions:
            # copies: the core goes on changing the records it was given
            self.batches.append((copy.deepcopy(events), now))
            d = handle(events, now)
            self.decisions.append(_plain(d))
            return d

        self.core.handle = recorded  # type: ignore[method-assign]


def _script() -> Recording:
    flows.FLAKY.clear()
    w = Recording(ids=IdMint(2026))
    w.submit(flows.fan, {"n": 4})
    w.submit(flows.backtracking, {"n": 2})
    run = w.submit(flows.retrying, {"key": "purity", "fail_times": 3})
    for _ in range(3):
        w.drain()
        w.fire_timers(w.now + 100)
    w.core.forget_run(run)
    (act,) = w.acts("flaky")
    w.feed(RetryLoaded(activity=w.activities[act.id], restore=RunRestored(
        run=w.runs[run], activities=list(w.activities.values()), products=list(w.store_products))))
    w.drain()
    return w


def _plain(d: Decisions) -> Any:
    return msgspec.to_builtins(dict(vars(d)))


def test_same_events_same_decisions() -> None:
    first = _script()
    assert len(first.decisions) >= 15 and first.acts("make_aux"), "the script covers a backtrack"
    replay = Controller(ids=IdMint(2026))
    for spec in (t.spec for t in first.tasks.values()):
        replay.register_task(spec, current=True)
    for (events, now), expected in zip(first.batches, first.decisions, strict=True):
        assert _plain(replay.handle(events, now)) == expected


def test_another_mint_gives_other_ids() -> None:
    a, b = IdMint(1), IdMint(2)
    assert [a.new("act", 5.0) for _ in range(3)] != [b.new("act", 5.0) for _ in range(3)]
    c = IdMint(1)
    ids = {c.new("act", 5.0) for _ in range(10_000)}
    assert len(ids) == 10_000, "one mint never repeats an id"


def test_the_core_reads_no_clock_and_no_random_source() -> None:
    forbidden = {"time", "random", "os", "uuid", "secrets", "datetime", "threading"}
    for path in sorted(CORE.glob("*.py")):
        if path.name in SHELL:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
                assert not (node.module == "skyweave.model.ids" and any(
                    a.name == "new_id" for a in node.names)), f"{path.name} makes ids from the clock"
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"
