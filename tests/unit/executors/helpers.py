"""Helpers shared by the executor tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from skyweave.model.messages import DispatchActivity, ProductRef
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
