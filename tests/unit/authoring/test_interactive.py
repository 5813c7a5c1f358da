"""Tasks defined where no file holds them (notebook cells, python -c): their module assembled from
the session's source (``authoring/interactive.py``), run by worker processes, the source kept in the
snapshot that provenance names.  A real Jupyter kernel runs them in tests/e2e/test_notebook.py."""

from __future__ import annotations

import linecache
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import skyweave
from skyweave.authoring.interactive import assemble, defined_interactively
from skyweave.errors import DefinitionError, RunFailedError
from skyweave.executors.resolve import load_file

CELLS = [
    "import numpy as np\nfrom skyweave import task, workflow\nGAIN = np.array([1.0, 2.0])\nOFFSET = {'a': 1}\n",
    "def helper(v):\n    return v * float(GAIN.sum()) + OFFSET['a']\n\nclass Acc:\n    base = 10\n"
    "    def add(self, v):\n        return self.base + helper(v)\n",
    "@task\ndef grow(x: int) -> float:\n    \"\"\"A task of a notebook cell.\"\"\"\n    return Acc().add(x)\n\n"
    "@workflow\ndef flow(n: int = 2):\n    return [grow(x=i) for i in range(n)]\n",
]


def run_cells(cells: list[str], tag: str, *, keep_source: bool = True) -> dict[str, Any]:
    """Run code as IPython does: each cell compiled under its own name, its text in linecache."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for i, cell in enumerate(cells):
        name = f"<ipython-input-{i + 1}-{tag}>"
        if keep_source:
            linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
        exec(compile(cell, name, "exec"), namespace)
    return namespace


@pytest.fixture
def cells(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    tag = request.node.name.replace("[", "_").replace("]", "")
    yield run_cells(CELLS, tag)
    for name in [n for n in linecache.cache if n.endswith(f"-{tag}>")]:
        del linecache.cache[name]


def test_cell_tasks_run_in_worker_processes_with_their_source_snapshotted(cells: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    grow = cells["grow"]
    assert defined_interactively(grow) and grow.spec.ref == "__main__:grow"
    with skyweave.Client(str(tmp_path / "store"), workers=1) as client:
        run = client.run(cells["flow"], {"n": 3}, timeout=60)
        assert run.status == "succeeded", run.summary()
        assert run.results() == [11.0, 14.0, 17.0]
        (spec,) = [s for s, _ in client.store.list_tasks() if s.name == "grow"]
        prov = client.store.get_run(run.id)
    path, _, qualname = spec.ref.rpartition(":")
    snapshot = Path(path).read_text()
    assert qualname == "grow" and Path(path).is_relative_to(tmp_path / "store" / "code")
    for needed in ("def helper(v):", "class Acc:", "GAIN = np.array([1.0, 2.0])", "OFFSET = {'a': 1}",
                   "import numpy as np", "@task\ndef grow"):
        assert needed in snapshot
    assert "def flow" not in snapshot and prov.workflow == "flow"  # only what the task reaches
    assert spec.code_hash == grow.spec.code_hash and spec.version == grow.spec.version


def test_the_assembled_module_defines_the_same_versions(cells: dict[str, Any], tmp_path: Path) -> None:
    """What the server loads from an uploaded notebook workflow hashes as the notebook did: the
    versions recorded remotely are the notebook's."""
    source = tmp_path / "flow.py"
    source.write_text(assemble(cells["flow"]))
    module = load_file(source)
    assert module.grow.spec.code_hash == cells["grow"].spec.code_hash
    assert module.flow.build({"n": 2})[0]["tasks"] == cells["flow"].build({"n": 2})[0]["tasks"]


def test_a_changed_helper_is_a_new_version(tmp_path: Path) -> None:
    first = run_cells(CELLS, "v1")
    second = run_cells([CELLS[0], CELLS[1].replace("+ OFFSET['a']", "- OFFSET['a']"), CELLS[2]], "v2")
    assert first["grow"].version != second["grow"].version
    assert "- OFFSET['a']" in assemble(second["grow"])


@pytest.mark.slow  # a Python process of its own: ~7 s on a busy 2-core machine
def test_python_c_tasks_run_locally(tmp_path: Path) -> None:
    code = (
        "import skyweave, sys\n"
        "from skyweave import task, workflow\n"
        "K = 7\n"
        "@task\ndef times(x: int) -> int:\n    return x * K\n"
        "@workflow\ndef flow():\n    return times(x=6)\n"
        f"with skyweave.Client({str(tmp_path / 'store')!r}, executor='threads') as c:\n"
        "    r = c.run(flow, timeout=60)\n"
        "    print(r.status, r.results())\n"
        "    print(open(c.store.list_tasks()[0][0].ref.rpartition(':')[0]).read())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("succeeded 42") and "K = 7" in done.stdout
    assert "def times(x: int) -> int:\n    return x * K" in done.stdout


def test_a_package_the_workers_lack_is_named(tmp_path: Path) -> None:
    fake = types.ModuleType("skyweave_only_in_this_session")
    fake.factor = lambda: 3  # type: ignore[attr-defined]
    sys.modules[fake.__name__] = fake
    try:
        ns = run_cells(["import skyweave_only_in_this_session as only\nfrom skyweave import task, workflow\n"
                        "@task\ndef use(x: int) -> int:\n    return x * only.factor()\n"
                        "@workflow\ndef flow():\n    return use(x=2)\n"], "pkg")
        assert ns["use"].fn(2) == 6  # fine in the session itself
        with skyweave.Client(str(tmp_path / "store"), workers=1) as client:
            run = client.run(ns["flow"], timeout=60)
            assert run.status == "failed"
            with pytest.raises(RunFailedError, match="needs the module 'skyweave_only_in_this_session'"):
                run.results()
    finally:
        del sys.modules[fake.__name__]


def test_a_missing_distribution_is_named_with_the_sessions_version(tmp_path: Path) -> None:
    source = tmp_path / "cell.py"
    source.write_text("__skyweave_requires__ = {'skyweave_absent': ('skyweave-absent-dist', '1.2.3')}\n"
                      "import skyweave_absent\n")
    with pytest.raises(DefinitionError, match=r"needs the package 'skyweave-absent-dist' \(module "
                                              r"'skyweave_absent'; the session that sent the task has 1.2.3\)") as err:
        load_file(source)
    assert err.value.hint == "install it where the workers run: pip install 'skyweave-absent-dist==1.2.3'"


def test_code_without_kept_source_is_refused_with_what_to_do(tmp_path: Path) -> None:
    ns = run_cells(CELLS, "nosource", keep_source=False)
    with skyweave.Client(str(tmp_path / "store"), workers=1) as client, \
            pytest.raises(DefinitionError, match="whose source Python did not keep") as err:
        client.submit(ns["flow"])
    assert "notebook cell" in (err.value.hint or "")


def test_a_value_no_one_statement_makes_is_refused_by_name() -> None:
    ns = run_cells(["import threading\nfrom skyweave import task\nLOCKS = [threading.Lock()]\n",
                    "LOCKS = [threading.Lock(), threading.Lock()]\n"
                    "@task(version='1')\ndef locked(x: int) -> int:\n    return len(LOCKS) + x\n"], "lock")
    with pytest.raises(DefinitionError, match="'locked' uses 'LOCKS' \\(a list\\)") as err:
        assemble(ns["locked"])
    assert "parameter" in (err.value.hint or "")


def test_a_value_changed_after_its_statement_is_refused() -> None:
    """The statement alone would make another value than the session holds."""
    ns = run_cells(["import threading\nfrom skyweave import task\nLOCKS = [threading.Lock()]\n"
                    "LOCKS.append(threading.Lock())\n"
                    "@task(version='1')\ndef locked(x: int) -> int:\n    return len(LOCKS) + x\n"], "append")
    with pytest.raises(DefinitionError, match="'locked' uses 'LOCKS'"):
        assemble(ns["locked"])
