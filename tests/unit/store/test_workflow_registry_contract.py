"""Store contract, the workflow registry (revision 0010): a version is kept with its code snapshot
and hash, the same code again changes nothing, other code under a registered version is refused,
"latest" is the version registered last, and an unknown name or version lists what exists."""

from __future__ import annotations

import pytest

from skyweave.errors import NotFoundError, VersionConflictError
from skyweave.model.records import WorkflowRecord
from skyweave.store import Store


def version(name: str, label: str, source: str, at: float) -> WorkflowRecord:
    return WorkflowRecord(name=name, version=label, kind="python", filename="flow.py", entry=name,
                          source=source, code_hash=f"sha256:{abs(hash(source)):x}", origin="/src/flow.py",
                          registered_at=at)


def test_versions_are_kept_with_their_snapshot_and_the_latest_is_the_last_registered(store: Store) -> None:
    first = store.register_workflow(version("imaging", "2", "v = 2\n", at=1.0))
    store.register_workflow(version("imaging", "10", "v = 10\n", at=2.0))
    store.register_workflow(version("calibrate", "1", "c = 1\n", at=3.0))
    assert first.source == "v = 2\n" and first.registered_at == 1.0
    assert store.get_workflow("imaging").version == "10"  # registered last, not sorted as text
    assert store.get_workflow("imaging", "2") == first
    assert [(w.name, w.version) for w in store.list_workflows()] == \
        [("calibrate", "1"), ("imaging", "2"), ("imaging", "10")]
    assert [w.version for w in store.list_workflows("imaging")] == ["2", "10"]
    assert store.list_workflows("nothing") == []


def test_the_same_code_again_keeps_the_first_registration(store: Store) -> None:
    store.register_workflow(version("imaging", "1", "v = 1\n", at=1.0))
    again = store.register_workflow(version("imaging", "1", "v = 1\n", at=5.0))
    assert again.registered_at == 1.0
    assert len(store.list_workflows()) == 1


def test_other_code_under_a_registered_version_is_refused(store: Store) -> None:
    store.register_workflow(version("imaging", "1", "v = 1\n", at=1.0))
    with pytest.raises(VersionConflictError, match=r"'imaging' version '1' is already registered with "
                                                   r"different code") as info:
        store.register_workflow(version("imaging", "1", "v = 'changed'\n", at=2.0))
    assert info.value.hint is not None and "--version" in info.value.hint
    assert store.get_workflow("imaging", "1").source == "v = 1\n"


def test_an_unknown_name_or_version_says_what_exists(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no registered workflow 'imaging'") as none:
        store.get_workflow("imaging")
    assert none.value.hint is not None and "no workflow is registered" in none.value.hint
    store.register_workflow(version("imaging", "1", "v = 1\n", at=1.0))
    store.register_workflow(version("calibrate", "3", "c = 3\n", at=2.0))
    with pytest.raises(NotFoundError, match="no registered workflow 'imaging@7'") as bad_version:
        store.get_workflow("imaging", "7")
    assert bad_version.value.hint == "registered versions of 'imaging': imaging@1"
    with pytest.raises(NotFoundError) as bad_name:
        store.get_workflow("imagin")
    assert bad_name.value.hint is not None and "registered workflows: calibrate, imaging" in bad_name.value.hint
