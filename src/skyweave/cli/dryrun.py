"""``skyweave run --dry-run``: print a ``RunPlan`` (what would be reused, what would run, why)."""

from __future__ import annotations

from skyweave.cli import output
from skyweave.plan import RunPlan

LABELS = {"reuse": "reuse", "run": "run", "skip": "skip", "fail": "fail", "later": "at run time"}


def show_plan(plan: RunPlan, as_json: bool) -> None:
    if as_json:
        output.print_json(plan.to_json())
        return
    counts = plan.counts
    parts = [f"{counts[a]} {LABELS[a]}" for a in LABELS if counts.get(a)]
    output.table(f"dry run of {plan.workflow}: nothing was run", ["step", "task", "action", "why"],
                 [(s.step, f"{s.task}@{s.version}", LABELS[s.action], "; ".join(s.reasons))
                  for s in plan.steps])
    output.console.print(f"would: {', '.join(parts) or 'do nothing'}", highlight=False)
