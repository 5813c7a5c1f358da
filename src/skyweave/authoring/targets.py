"""Load the workflow a command line or ``Client.run`` names: ``FILE.py:NAME``, ``module:NAME``,
or a declarative ``FILE.yaml``/``.yml``/``.json``.

Above both ``loader`` (Python objects) and ``declarative`` (which loads its ``python:`` tasks
through ``loader``), so neither has to import the other.
"""

from __future__ import annotations

from pathlib import Path

from skyweave.authoring.declarative import load_declarative
from skyweave.authoring.loader import load_object, split_target
from skyweave.authoring.workflow import Workflow
from skyweave.errors import WorkflowLoadError

DECLARATIVE_SUFFIXES = (".yaml", ".yml", ".json")


def load_workflow(target: str) -> Workflow:
    """``FILE.py:NAME``, ``module:NAME``, or a declarative ``FILE.yaml``/``.yml``/``.json`` (``:NAME``
    optional: it must then be the file's ``workflow:`` name)."""
    where, attr = split_target(target)
    if where.lower().endswith(DECLARATIVE_SUFFIXES):
        return load_declarative(Path(where), attr)
    obj = load_object(target)
    if not isinstance(obj, Workflow):
        raise WorkflowLoadError(f"{target} is a {type(obj).__name__}, not a @workflow",
                                hint="decorate the function with @skyweave.workflow")
    return obj
