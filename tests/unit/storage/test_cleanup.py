"""Retention planning and clean-up (``storage/cleanup.py``) on real stores (SQLite, PostgreSQL) and
real files.

The provenance used throughout::

    aux (external, ep.aux.attitude) ──┐
    raw (external, ep.l0.raw) ─ decode ─ l1 (ep.l1.events) ─ calibrate ─ l2 (ep.l2.events)
                                       └ l1b (ep.l1.events, another detector, not used further)
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.config.settings import RetentionRule
from skyweave.model.records import ActivityRecord, Changeset, ProductRecord, RunRecord, UsageRecord
from skyweave.storage.cleanup import DAY_S, apply_cleanup, plan_cleanup
from skyweave.storage.local import file_uri
from skyweave.store import Store, open_store

NOW = 1_700_000_000.0
OLD = NOW - 40 * DAY_S


_STORAGE: weakref.WeakKeyDictionary[Store, Path] = weakref.WeakKeyDictionary()


def storage_of(store: Store) -> Path:
    """The product storage of the ``store`` fixture: ``files`` are written there."""
    return _STORAGE[store]


def rule(type: str = "ep.l1.*", days: float = 30, **fields: bool) -> RetentionRule:
    return RetentionRule(type=type, older_than_days=days, **fields)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name in ("aux", "raw", "l1", "l1b", "l2"):
        paths[name] = tmp_path / "products" / f"{name}.dat"
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_bytes(name.encode() * 10)
    return paths


@pytest.fixture(params=[pytest.param("sqlite"),
                        pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path, files: dict[str, Path]) -> Iterator[Store]:
    """The provenance of the module docstring, in a SQLite store and in a PostgreSQL one (the
    server of ``scripts/services.sh``: retention plans with the same queries there)."""
    url = str(tmp_path / "store") if request.param == "sqlite" else request.getfixturevalue("postgres_store_url")
    opened = open_store(url)
    _STORAGE[opened] = tmp_path / "products"

    def prd(name: str, type: str, activity: str | None, created: float) -> ProductRecord:
        return ProductRecord(id=name, uri=file_uri(files[name]), type=type, name=name, created_at=created,
                             size=files[name].stat().st_size, activity_id=activity,
                             run_id=None if activity is None else "run-1")

    def act(id: str, task: str) -> ActivityRecord:
        return ActivityRecord(id=id, run_id="run-1", node=task, task_name=task, task_version="1",
                              state="succeeded", arguments={})

    opened.apply(Changeset(
        runs=[RunRecord(id="run-1", workflow="l1", state="succeeded")],
        activities=[act("decode", "decode"), act("calibrate", "calibrate")],
        products=[prd("aux", "ep.aux.attitude", None, OLD), prd("raw", "ep.l0.raw", None, OLD),
                  prd("l1", "ep.l1.events", "decode", OLD), prd("l1b", "ep.l1.events", "decode", OLD),
                  prd("l2", "ep.l2.events", "calibrate", OLD)],
        usages=[UsageRecord(activity_id="decode", product_id="raw", role="raw"),
                UsageRecord(activity_id="calibrate", product_id="l1", role="events"),
                UsageRecord(activity_id="calibrate", product_id="aux", role="attitude")]))
    yield opened
    opened.close()


def planned(store: Store, *rules: RetentionRule, now: float = NOW) -> tuple[list[str], dict[str, str]]:
    plan = plan_cleanup(store, rules, now, storage_of(store))
    return sorted(d.product.id for d in plan.delete), {k.product.id: k.reason for k in plan.kept}


# -- planning -------------------------------------------------------------------------------------
def test_products_older_than_the_rule_of_their_type_are_planned(store: Store) -> None:
    assert planned(store, rule()) == (["l1", "l1b"], {})
    assert planned(store, rule(days=45)) == ([], {})
    assert planned(store, rule(), now=OLD + 20 * DAY_S)[0] == []  # when they were 20 days old
    plan = plan_cleanup(store, [rule()], NOW, storage_of(store))
    assert plan.files == 2 and plan.bytes == len(b"l1" * 10) + len(b"l1b" * 10)
    assert "matches rule 0 ('ep.l1.*')" in plan.delete[0].reason and "40.0 days old" in plan.delete[0].reason


def test_no_rules_plan_nothing(store: Store) -> None:
    assert planned(store) == ([], {})


def test_the_first_rule_whose_pattern_matches_governs(store: Store) -> None:
    # the specific rule (90 days) comes first: ep.l1.events stay although ep.l* says 30 days
    assert planned(store, rule("ep.l1.events", 90), rule("ep.l[12]*", 30)) == (["l2"], {})
    assert planned(store, rule("ep.l?.events", 30)) == (["l1", "l1b", "l2"], {})
    assert planned(store, rule("EP.L1.*", 30)) == ([], {})  # patterns are case-sensitive


def test_a_pinned_product_is_kept(store: Store) -> None:
    store.pin_products(["l1b"])
    plan = plan_cleanup(store, [rule()], NOW, storage_of(store))
    assert [d.product.id for d in plan.delete] == ["l1"]
    assert [(k.product.id, k.reason, k.pinned_by) for k in plan.kept] == [("l1b", "pinned", ("l1b",))]


def test_what_a_pinned_product_was_made_from_is_kept_and_says_which(store: Store) -> None:
    store.pin_products(["l2"])
    deleted, kept = planned(store, rule("ep.*", 30, include_external=True))
    assert deleted == ["l1b"]
    assert set(kept) == {"l2", "l1", "aux", "raw"}
    assert kept["l2"] == "pinned"
    assert kept["raw"] == kept["l1"] == kept["aux"] == "pinned product l2 was made from it"
    plan = plan_cleanup(store, [rule("ep.*", 30, include_external=True)], NOW, storage_of(store))
    assert {k.pinned_by for k in plan.kept} == {("l2",)}


def test_a_rule_may_ignore_pins(store: Store) -> None:
    store.pin_products(["l2"])
    assert planned(store, rule(keep_pinned=False)) == (["l1", "l1b"], {})


def test_external_products_are_kept_unless_the_rule_includes_them(store: Store) -> None:
    deleted, kept = planned(store, rule("ep.a*", 30), rule("ep.l0.*", 30))
    assert deleted == [] and set(kept) == {"aux", "raw"}
    assert "cannot be recomputed" in kept["aux"]
    assert planned(store, rule("ep.aux.*", 30, include_external=True)) == (["aux"], {})


def test_a_product_an_unfinished_activity_uses_is_kept(store: Store) -> None:
    store.apply(Changeset(activities=[ActivityRecord(
        id="merge", run_id="run-2", node="merge", task_name="merge", task_version="1", state="queued",
        arguments={"parts": [{"$product": "l1b"}], "n": 2})]))
    assert planned(store, rule()) == (["l1"], {"l1b": "used by unfinished activity merge"})


def test_deleted_products_are_not_planned_again(store: Store) -> None:
    store.mark_products(["l1"], "deleted")
    assert planned(store, rule())[0] == ["l1b"]


def test_planning_changes_nothing(store: Store, files: dict[str, Path]) -> None:
    store.pin_products(["l2"])
    plan_cleanup(store, [rule("ep.*", 0, include_external=True)], NOW, storage_of(store))
    assert all(path.exists() for path in files.values())
    assert {p.state for p in store.find_products(state=None)} == {"available"}


# -- applying ------------------------------------------------------------------------------------
def test_apply_deletes_files_marks_rows_and_keeps_provenance(store: Store, files: dict[str, Path]) -> None:
    store.pin_products(["l2"])
    result = apply_cleanup(store, plan_cleanup(store, [rule("ep.*", 30, include_external=True)], NOW, storage_of(store)))
    assert result.ok and result.deleted == ["l1b"] and result.already_gone == []
    assert result.bytes_freed == len(b"l1b" * 10)
    assert not files["l1b"].exists()
    assert all(files[name].exists() for name in ("aux", "raw", "l1", "l2"))
    assert store.get_product("l1b").state == "deleted"
    assert [p.id for p in store.find_products(state="deleted")] == ["l1b"]
    # provenance rows are never deleted
    assert store.get_activity("decode").state == "succeeded"
    assert len(store.list_usages()) == 3
    assert len(store.find_products(state=None)) == 5


def test_a_file_already_gone_is_marked_deleted(store: Store, files: dict[str, Path]) -> None:
    files["l1"].unlink()
    result = apply_cleanup(store, plan_cleanup(store, [rule()], NOW, storage_of(store)))
    assert result.ok and result.deleted == ["l1b"] and result.already_gone == ["l1"]
    assert {p.id for p in store.find_products(state="deleted")} == {"l1", "l1b"}


def test_one_failure_does_not_stop_the_rest(store: Store, files: dict[str, Path]) -> None:
    files["l1"].unlink()
    files["l1"].mkdir()  # unlink() of a directory fails
    result = apply_cleanup(store, plan_cleanup(store, [rule()], NOW, storage_of(store)))
    assert not result.ok
    assert [pid for pid, _ in result.failed] == ["l1"] and "l1.dat" in result.failed[0][1]
    assert result.deleted == ["l1b"]
    assert store.get_product("l1").state == "available"
    assert store.get_product("l1b").state == "deleted"


def test_a_product_in_another_storage_is_kept_with_a_message(store: Store) -> None:
    store.apply(Changeset(products=[ProductRecord(id="remote", uri="s3://bucket/l1.dat", type="ep.l1.events",
                                                  activity_id="decode", created_at=OLD)]))
    plan = plan_cleanup(store, [rule()], NOW, storage_of(store))
    assert [(k.product.id, k.reason) for k in plan.kept] == [
        ("remote", "at s3://bucket/l1.dat, not in the product storage: skyweave never deletes it")]
    result = apply_cleanup(store, plan)
    assert result.skipped == []
    assert store.get_product("remote").state == "available"
    assert sorted(result.deleted) == ["l1", "l1b"]


def test_a_product_pinned_after_planning_is_not_deleted(store: Store, files: dict[str, Path]) -> None:
    plan = plan_cleanup(store, [rule()], NOW, storage_of(store))
    store.pin_products(["l1"])
    result = apply_cleanup(store, plan)
    assert result.skipped == [("l1", "pinned since the plan was made")]
    assert files["l1"].exists() and store.get_product("l1").state == "available"
    assert result.deleted == ["l1b"]


def test_plan_and_result_as_json(store: Store) -> None:
    store.pin_products(["l1b"])
    plan = plan_cleanup(store, [rule()], NOW, storage_of(store))
    data = plan.to_json()
    assert data["totals"] == {"files": 1, "bytes": 20, "kept": 1}
    assert data["delete"][0]["id"] == "l1" and data["delete"][0]["pattern"] == "ep.l1.*"
    assert data["kept"] == [{"id": "l1b", "type": "ep.l1.events", "rule": 0, "reason": "pinned",
                             "pinned_by": ["l1b"]}]
    assert apply_cleanup(store, plan).to_json()["deleted"] == ["l1"]


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="older_than_days"):
        RetentionRule(type="x", older_than_days=-1)
    with pytest.raises(ValueError, match="keep_pined"):
        RetentionRule.model_validate({"type": "x", "older_than_days": 1, "keep_pined": False})
