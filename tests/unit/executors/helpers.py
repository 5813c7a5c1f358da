"""Helpers shared by the executor tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from skyweave.executors.base import Executor, Outcome
from skyweave.model.messages import ActivityStarted, DispatchActivity, ProductRef
from skyweave.model.specs import OutputSpec, Resources, TaskKind, TaskSpec
from skyweave.storage.local import file_uri

from . import tasks_for_tests

TASKS_FILE = Path(tasks_for_tests.__file__).resolve()
TASKS_MODULE = tasks_for_tests.__name__
TASKS_IMPORT_ROOT = TASKS_FILE.parents[TASKS_MODULE.count(".")]
"""The folder to put on ``sys.path`` for ``TASKS_MODULE`` to import (however pytest named it)."""


def by_path(name: str) -> str:
    return f"{TASKS_FILE}:{name}"


def by_module(name: str) -> str:
    return f"{TASKS_MODULE}:{name}"


_counter = iter(range(1_000_000))


def dispatch(
    ref: str,
    arguments: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    products: dict[str, ProductRef] | None = None,
    kind: TaskKind = TaskKind.PYTHON,
    outputs: dict[str, OutputSpec] | None = None,
    parameters: dict[str, str] | None = None,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    priority: int = 0,
    version: str = "1.0",
    attempt: int = 1,
) -> DispatchActivity:
    task = TaskSpec(
        name=name or ref.rpartition(":")[2] or "command",
        version=version,
        kind=kind,
        ref=ref,
        outputs=outputs or {},
        parameters=parameters or {},
        timeout_s=timeout_s,
        resources=Resources(memory_mb=memory_mb),
    )
    return DispatchActivity(
        activity_id=f"act-test{next(_counter):06d}",
        attempt=attempt,
        run_id="run-test",
        task=task,
        arguments=arguments or {},
        products=products or {},
        priority=priority,
        obs_id="obs-0001",
    )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def product_ref(
    path: Path, product_id: str, *, checksum: str | None = None, type: str = "file"
) -> ProductRef:
    data = path.read_bytes()
    return ProductRef(
        id=product_id,
        uri=file_uri(path),
        type=type,
        checksum=checksum if checksum is not None else sha256(data),
        size=len(data),
    )


# -- waiting for what an executor reports (collect until it arrives; a deadline only fails a hung test)

DEADLINE_S = 30.0


def run_until(
    executor: Executor,
    wanted: Sequence[str],
    *,
    deadline_s: float = DEADLINE_S,
    events: list[Outcome] | None = None,
) -> dict[str, Outcome]:
    """Collect until every id in ``wanted`` has a final outcome; fail at the deadline."""
    final: dict[str, Outcome] = {}
    end = time.monotonic() + deadline_s
    while not set(wanted) <= set(final):
        assert time.monotonic() < end, f"no outcome for {sorted(set(wanted) - set(final))} in {deadline_s} s"
        for outcome in executor.collect(0.5):
            if events is not None:
                events.append(outcome)
            if not isinstance(outcome, ActivityStarted):
                assert outcome.activity_id not in final, f"two final outcomes for {outcome.activity_id}"
                final[outcome.activity_id] = outcome
    return final


def wait_started(executor: Executor, activity_id: str, events: list[Outcome]) -> ActivityStarted:
    """Collect (into ``events``: everything, nothing dropped) until ``activity_id`` has started."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        events.extend(executor.collect(0.5))
        for outcome in events:
            if isinstance(outcome, ActivityStarted) and outcome.activity_id == activity_id:
                return outcome
    raise AssertionError(f"{activity_id} never started")


def wait_gone(pid: int) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still running")
