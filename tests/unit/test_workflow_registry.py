"""The workflow registry through the embedded Client (``workflows.py``): a registered version runs
from its snapshot whatever became of the file, with the task versions it defines; the run records
``NAME@VERSION`` and the snapshot's hash; re-registering a version with other code, unknown
names and versions, bad names, and a snapshot that cannot load alone are refused clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.client import Client
from skyweave.errors import DefinitionError, NotFoundError, ParameterError, VersionConflictError
from skyweave.provenance.export import export
from skyweave.workflows import Registered, code_hash, parse

FLOW = """
from skyweave import task, workflow

FACTOR = {factor}


@task
def scale(x: int) -> int:
    return x * FACTOR


@workflow
def scaling(x: int = 1) -> int:
    return scale(x=x)
"""

DECLARATIVE = """
workflow: scaled
params:
  x: {type: int, default: 1}
tasks:
  listing: {python: "skyweave.examples.mini_xray:list_detectors"}
steps:
  first: {task: listing, args: {obs_id: "ep", seed: $params.x}}
output: $first
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), workers=1, executor="threads") as c:
        yield c


def write(path: Path, factor: int) -> str:
    path.write_text(FLOW.format(factor=factor))
    return f"{path}:scaling"


def test_a_registered_version_runs_its_snapshot_after_the_file_changed(client: Client, tmp_path: Path) -> None:
    target = write(tmp_path / "flow.py", 2)
    one = client.register_workflow(target, version="1")
    write(tmp_path / "flow.py", 3)
    two = client.register_workflow(target, version="2")
    (tmp_path / "flow.py").unlink()  # the runs below need only the store's snapshots

    assert (one.name, one.entry, one.kind) == ("scaling", "scaling", "python")
    assert one.code_hash == code_hash(FLOW.format(factor=2)) and "FACTOR = 2" in one.source
    assert client.run("scaling@1", {"x": 5}, timeout=60).results() == 10
    assert client.run("scaling", {"x": 5}, timeout=60).results() == 15  # the latest: 2
    again = client.run("scaling", {"x": 5}, version="1", timeout=60)
    assert again.results() == 10  # version 1's task, though version 2's is current
    record = client.store.get_run_head(again.id)
    assert (record.workflow_ref, record.workflow_hash) == ("scaling@1", one.code_hash)
    assert (client.summary(again.id)["workflow_ref"], client.summary(again.id)["workflow_hash"]) == \
        ("scaling@1", one.code_hash)
    provn = export(client.store, fmt="provn", run_id=again.id)
    assert "scaling@1" in provn and one.code_hash in provn
    assert two.code_hash != one.code_hash
    assert client.store.get_run_head(client.run(Registered("scaling", "2"), {"x": 1}, timeout=60).id) \
        .workflow_hash == two.code_hash


def test_registering_again_is_a_no_op_and_other_code_under_a_version_is_refused(client: Client,
                                                                                 tmp_path: Path) -> None:
    target = write(tmp_path / "flow.py", 2)
    first = client.register_workflow(target, version="1")
    assert client.register_workflow(target, version="1") == first
    default = client.register_workflow(target)  # the default version follows the code
    assert default.version == first.code_hash.split(":")[1][:12]
    write(tmp_path / "flow.py", 4)
    with pytest.raises(VersionConflictError, match="already registered with different code"):
        client.register_workflow(target, version="1")
    assert client.store.get_workflow("scaling", "1").source == first.source
    assert [w.version for w in client.workflows("scaling")] == ["1", default.version]


def test_unknown_names_and_versions_say_what_is_registered(client: Client, tmp_path: Path) -> None:
    client.register_workflow(write(tmp_path / "flow.py", 2), version="1")
    with pytest.raises(NotFoundError, match="no registered workflow 'scaling@9'") as info:
        client.submit("scaling@9")
    assert info.value.hint == "registered versions of 'scaling': scaling@1"
    with pytest.raises(NotFoundError, match=r"no registered workflow 'scalin'.*nor a workflow to import") as bare:
        client.submit("scalin")
    assert bare.value.hint is not None and "registered workflows: scaling" in bare.value.hint
    with pytest.raises(ParameterError, match="version does not apply"):
        client.submit(f"{tmp_path / 'flow.py'}:scaling", version="1")


@pytest.mark.parametrize("bad", ["a b", "../x", "x@", "x@../y", "@1", "x@1@2", "-x", "x" * 101, "x@" + "1" * 65,
                                 "caf\u00e9", "x\x00y"])
def test_bad_names_and_versions_are_refused(client: Client, tmp_path: Path, bad: str) -> None:
    name, _, version = bad.partition("@")
    with pytest.raises(ParameterError):
        Registered(name, version if "@" in bad else None)
    if "/" not in bad:  # a path is not a name: it loads as a file (and is refused as one)
        with pytest.raises(ParameterError):
            parse(bad)
        with pytest.raises(ParameterError):
            client.submit(bad)
    with pytest.raises(ParameterError):
        client.register_workflow(write(tmp_path / "flow.py", 2), name=bad)


def test_a_declarative_file_registers_under_its_workflow_name(client: Client, tmp_path: Path) -> None:
    (tmp_path / "scaled.yaml").write_text(DECLARATIVE)
    record = client.register_workflow(str(tmp_path / "scaled.yaml"), version="1")
    assert (record.name, record.kind, record.entry, record.filename) == ("scaled", "declarative", "scaled",
                                                                          "scaled.yaml")
    run = client.submit("scaled@1", {"x": 0})
    assert client.store.get_run_head(run.id).workflow_ref == "scaled@1"


def test_a_workflow_that_needs_files_beside_it_is_refused_at_registration(client: Client, tmp_path: Path) -> None:
    (tmp_path / "helpers_beside.py").write_text("FACTOR = 2\n")
    (tmp_path / "flow.py").write_text(FLOW.replace("FACTOR = {factor}", "from helpers_beside import FACTOR"))
    with pytest.raises(DefinitionError, match="does not load from its snapshot") as info:
        client.register_workflow(f"{tmp_path / 'flow.py'}:scaling", version="1")
    assert info.value.hint is not None and "installed module" in info.value.hint
    assert client.workflows() == [] and not any((client.settings.store_dir / "workflows").glob("*/flow.py"))
