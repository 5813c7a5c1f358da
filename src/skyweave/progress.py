"""Progress bars of ``Client.wait(progress=True)``.

* ``CountsBar``: a ``tqdm.auto`` bar of a run's activities done out of all, with the counts by
  state beside it: an ipywidgets widget in a Jupyter kernel, a text bar in a terminal.  The remote
  Client feeds it from the server's event stream; the embedded Client uses it in a kernel.
* ``RunProgress``: the embedded Client's bar, fed from the store (so it works for a run that
  another process executes): rich in a terminal, a ``CountsBar`` widget in Jupyter.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from skyweave.model.records import RunRecord
from skyweave.model.states import RUN_TERMINAL
from skyweave.store.base import Store

DONE = ("succeeded", "failed", "skipped", "cancelled")


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel that can show widgets (ipywidgets and tqdm installed)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("ipywidgets", "tqdm"))


class CountsBar:
    """A run's activities done out of all, with the counts by state beside it (``tqdm.auto``)."""

    def __init__(self, run_id: str) -> None:
        from tqdm.auto import tqdm  # the remote or notebook extra

        self.bar = tqdm(total=None, desc=run_id, unit="activity", dynamic_ncols=True)

    def update(self, progress: dict[str, Any]) -> None:
        """``progress``: ``total``, ``done``, ``by_state`` and ``status`` (the server's snapshot)."""
        total = max(1, int(progress["total"]))
        if total != self.bar.total:  # a run grows (fan-out): the widget's bar takes a new length
            started = self.bar.start_t  # only through reset, which would restart the clock
            self.bar.reset(total=total)
            self.bar.start_t = started
        self.bar.n = int(progress["done"])
        detail = " ".join(f"{k}={v}" for k, v in sorted(progress["by_state"].items()))
        self.bar.set_postfix_str(f"{progress['status']} {detail}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class RunProgress:
    """The embedded Client's bar, fed from the store: rich in a terminal, a widget in Jupyter."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._last = 0.0
        self.widget = CountsBar(run_id) if in_jupyter() else None
        if self.widget is not None:
            return
        # markup=False: the description holds the workflow's name, which is user text
        self.progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}", markup=False),
                                 TimeElapsedColumn(), transient=False)
        self.task = self.progress.add_task(run_id, total=None, detail="")
        self.progress.start()

    def update(self, record: RunRecord) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and record.state not in RUN_TERMINAL:
            return
        self._last = now
        counts = self.store.count_activities(self.run_id)
        done = sum(v for k, v in counts.items() if k in DONE)
        if self.widget is not None:
            self.widget.update({"total": sum(counts.values()), "done": done, "by_state": counts,
                                "status": record.state})
            return
        detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        self.progress.update(self.task, total=max(1, sum(counts.values())), completed=done,
                             description=f"{record.workflow} {record.state}", detail=detail)

    def close(self) -> None:
        if self.widget is not None:
            self.widget.close()
        else:
            self.progress.stop()
