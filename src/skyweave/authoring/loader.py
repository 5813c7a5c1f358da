"""Load Python objects named ``path/to/file.py:name`` or ``package.module:name`` (tasks, workflows,
listeners).  ``targets.load_workflow`` adds declarative files on top of this module."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from skyweave.authoring.interactive import REQUIRES, missing_package
from skyweave.authoring.task import Task
from skyweave.authoring.workflow import Workflow
from skyweave.errors import SkyweaveError, WorkflowLoadError


def module_name_for(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return f"skyweave_user_{path.stem}_{digest}"


def load_module(path: Path) -> ModuleType:
    """Import a Python file by path under a stable module name (re-importing picks up edits)."""
    path = path.resolve()
    if not path.is_file():
        raise WorkflowLoadError(f"workflow file {str(path)!r} does not exist",
                                hint="give PATH.py:WORKFLOW with a path to an existing .py file")
    name = module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkflowLoadError(f"cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        frames = traceback.extract_tb(exc.__traceback__)
        where = next((f"{f.filename}:{f.lineno}" for f in reversed(frames)
                      if f.filename == str(path)), str(path))
        fix = "fix the error in the workflow file (run `python FILE` to see the full traceback)"
        if isinstance(exc, ModuleNotFoundError):
            what, how = missing_package(exc, getattr(module, REQUIRES, None))
            raise WorkflowLoadError(f"importing {path.name} failed at {where}: it needs {what}, which "
                                    f"is not installed here ({sys.executable})", hint=how) from exc
        if isinstance(exc, SkyweaveError):  # ours (a malformed task declaration): its own hint says how
            raise WorkflowLoadError(f"importing {path.name} failed at {where}: {exc.message}",
                                    hint=exc.hint or fix) from exc
        raise WorkflowLoadError(
            f"importing {path.name} failed at {where}: {type(exc).__name__}: {exc}", hint=fix,
        ) from exc
    return module


def split_target(target: str) -> tuple[str, str | None]:
    if ":" in target:
        where, _, attr = target.rpartition(":")
        return where, attr
    return target, None


def load_object(target: str) -> object:
    where, attr = split_target(target)
    if where.endswith(".py") or "/" in where:
        module = load_module(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise WorkflowLoadError(f"cannot import module {where!r}: {exc}",
                                    hint="give PATH.py:WORKFLOW or an importable module:WORKFLOW") from exc
    if attr is None:
        found = [n for n, v in vars(module).items() if isinstance(v, Workflow)]
        if len(found) != 1:
            raise WorkflowLoadError(
                f"{where} defines {len(found)} workflows ({', '.join(found) or 'none'}); say which",
                hint=f"use {where}:NAME")
        attr = found[0]
    obj = getattr(module, attr, None)
    if obj is None:
        names = [n for n, v in vars(module).items() if isinstance(v, Workflow | Task)]
        close = difflib.get_close_matches(attr, names, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise WorkflowLoadError(f"{where} has no {attr!r}{guess}",
                                hint=f"workflows and tasks defined there: {', '.join(names) or 'none'}")
    return obj


def load_task(target: str) -> Task:
    obj = load_object(target)
    if not isinstance(obj, Task):
        raise WorkflowLoadError(f"{target} is a {type(obj).__name__}, not a @task",
                                hint="decorate the function with @skyweave.task")
    return obj
