"""The progress bar of ``Client.wait(progress=True)``: rich, fed from the store (so it works for a
run that another process executes)."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from skyweave.model.records import RunRecord
from skyweave.model.states import RUN_TERMINAL
from skyweave.store.base import Store


class RunProgress:
    """A rich progress bar fed from the store (works across processes)."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        # markup=False: the description holds the workflow's name, which is user text
        self.progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}", markup=False),
                                 TimeElapsedColumn(), transient=False)
        self.task = self.progress.add_task(run_id, total=None, detail="")
        self.progress.start()
        self._last = 0.0

    def update(self, record: RunRecord) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and record.state not in RUN_TERMINAL:
            return
        self._last = now
        counts = self.store.count_activities(self.run_id)
        done = sum(v for k, v in counts.items() if k in ("succeeded", "failed", "skipped", "cancelled"))
        detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        self.progress.update(self.task, total=max(1, sum(counts.values())), completed=done,
                             description=f"{record.workflow} {record.state}", detail=detail)

    def close(self) -> None:
        self.progress.stop()
