"""A task module that starts a thread when imported (``test_on_dask.py``): a warm process must not
import it before forking (a fork with threads can leave the child holding a lock)."""

from __future__ import annotations

import os
import threading

IMPORTED_BY = os.getpid()
_stop = threading.Event()
threading.Thread(target=_stop.wait, name="started-by-import", daemon=True).start()


def note_lineage(ledger: str) -> None:
    with open(ledger, "a") as file:
        file.write(f"{IMPORTED_BY} {os.getpid()} {os.getppid()}\n")
