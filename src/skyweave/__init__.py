"""skyweave: dynamic, provenance-first workflows for astronomy data processing.

The public API is pinned by ``tests/unit/test_public_api.py``.
"""

from skyweave.authoring.refs import each, gather, result, unmapped
from skyweave.authoring.task import Task, command, task
from skyweave.authoring.workflow import Workflow, loop, workflow
from skyweave.client import Client, RunHandle
from skyweave.errors import Fatal, SkyweaveError
from skyweave.model.context import ActivityContext, context
from skyweave.model.product import Product
from skyweave.model.signals import InsufficientInput, MissingInput
from skyweave.model.specs import Resources, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "ActivityContext",
    "Client",
    "Fatal",
    "InsufficientInput",
    "MissingInput",
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
