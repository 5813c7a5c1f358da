"""skyweave: dynamic, provenance-first workflows for astronomy data processing.

The public API is pinned by ``tests/unit/test_public_api.py``.

Importing it is light: a task module needs ``task``, ``Product`` and friends, which come from
``authoring`` and ``model`` only.  ``Client`` and ``RunHandle`` (the engine, the store and
SQLAlchemy, the bus, rich) are imported on first use, through the module ``__getattr__`` below, so
a worker process or a container that only runs tasks never pays for them (bench/import_bench.py;
tests/unit/test_import_cost.py pins which modules stay out).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skyweave.authoring.external import File, Folder
from skyweave.authoring.refs import each, gather, result, unmapped
from skyweave.authoring.task import Task, command, task
from skyweave.authoring.workflow import Workflow, loop, workflow
from skyweave.errors import Fatal, SkyweaveError
from skyweave.model.context import ActivityContext, context
from skyweave.model.product import Product
from skyweave.model.signals import InsufficientInput, MissingInput
from skyweave.model.specs import OutputSpec, Resources, RetryPolicy

if TYPE_CHECKING:
    from skyweave.client import Client, RunHandle

__version__ = "0.1.0"

__all__ = [
    "ActivityContext",
    "Client",
    "Fatal",
    "File",
    "Folder",
    "InsufficientInput",
    "MissingInput",
    "OutputSpec",
    "Product",
    "Resources",
    "RetryPolicy",
    "RunHandle",
    "SkyweaveError",
    "Task",
    "Workflow",
    "__version__",
    "command",
    "context",
    "each",
    "gather",
    "loop",
    "result",
    "task",
    "unmapped",
    "workflow",
]

_LAZY = {"Client": "skyweave.client", "RunHandle": "skyweave.client"}
"""Public names imported on first use: name -> the module that defines it."""

if not TYPE_CHECKING:  # type checkers see the imports above, and still flag a misspelt name

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'skyweave' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups find it without coming here
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
