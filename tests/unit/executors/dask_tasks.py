"""Tasks for the Dask executor's own tests (``test_on_dask.py``), run by path."""

from __future__ import annotations

import os
import time
from pathlib import Path


def note(ledger: str, name: str) -> str:
    """Append ``name`` and this process's id to ``ledger`` (one line per execution)."""
    with open(ledger, "a") as file:
        file.write(f"{name} {os.getpid()}\n")
    return name


def note_then_wait(ledger: str, name: str, path: str) -> str:
    """``note``, then run until ``path`` exists (at most 60 s)."""
    note(ledger, name)
    end = time.monotonic() + 60.0
    while not Path(path).exists() and time.monotonic() < end:
        time.sleep(0.01)
    return name


IMPORTED_BY = os.getpid()
"""The process that imported this module: on a Dask worker, the warm process that forks activities."""


def note_lineage(ledger: str) -> None:
    """Append which process imported this module, this process and its parent."""
    with open(ledger, "a") as file:
        file.write(f"{IMPORTED_BY} {os.getpid()} {os.getppid()}\n")
