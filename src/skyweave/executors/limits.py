"""Measuring what an activity's processes use, for the executors that enforce
``resources.memory_mb`` themselves (``local``, ``subprocess``)."""

from __future__ import annotations

import contextlib

import psutil

MEMORY_CHECK_S = 0.2
"""How often the memory of a process running an activity with ``resources.memory_mb`` is looked at."""


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 for those already gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def over_memory(task_name: str, used_mb: float, limit_mb: int) -> str:
    """The message of an activity stopped for using more than its memory limit."""
    return (f"task {task_name!r} used {used_mb:.0f} MB, over its memory limit of {limit_mb} MB "
            "(resources.memory_mb; the worker process's whole tree counts); stopped")
