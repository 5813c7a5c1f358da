"""Authoring imports stay light: a task module, a worker process or a container that only runs
tasks must not load the engine, the store (SQLAlchemy, Alembic), settings (pydantic) or the CLI's
printing (rich).  Which modules load is checked, not how long it takes: the figure is measured by
bench/import_bench.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import skyweave

HEAVY = ("sqlalchemy", "alembic", "pydantic", "pydantic_settings", "rich", "typer", "prov",
         "skyweave.client", "skyweave.engine", "skyweave.store", "skyweave.controller", "skyweave.bus",
         "skyweave.config")


def _modules_after(statement: str) -> set[str]:
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("statement", [
    "from skyweave import task, Product",
    "import skyweave",
    "from skyweave import command, OutputSpec, Resources, workflow, context, MissingInput",
])
def test_authoring_imports_leave_the_engine_out(statement: str) -> None:
    loaded = _modules_after(statement)
    assert "skyweave.authoring.task" in loaded
    assert not [m for m in HEAVY if m in loaded]


def test_the_one_dispatch_entry_point_leaves_the_engine_out() -> None:
    """``python -m skyweave.execute`` runs in every Slurm job, container and pod."""
    loaded = _modules_after("import skyweave.execute")
    assert "skyweave.executors.boundary" in loaded
    assert not [m for m in HEAVY if m in loaded]


def test_client_is_imported_on_first_use() -> None:
    loaded = _modules_after("import skyweave\nskyweave.Client")
    assert {"skyweave.client", "sqlalchemy"} <= loaded
    assert "skyweave.client" in _modules_after("from skyweave import RunHandle")


def test_lazy_names_are_the_real_ones() -> None:
    from skyweave.client import Client, RunHandle

    assert skyweave.Client is Client
    assert skyweave.RunHandle is RunHandle
    assert {"Client", "RunHandle"} <= set(dir(skyweave))
    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        skyweave.Clinet  # type: ignore[attr-defined]  # noqa: B018
