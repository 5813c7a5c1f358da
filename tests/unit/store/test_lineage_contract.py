"""The lineage part of the store contract: ``Store.lineage`` and ``Store.impact`` on every backend in
``conftest.STORE_FACTORIES`` (the ``store`` fixture).

The provenance used throughout (``_two_runs``), two runs sharing one aux file from outside::

    run-1:  raw-1 --packets--> a-decode --> l1-1 --events--> a-cal --> l2-1 --image--> a-detect --> l3-1
                                               aux --attitude--^
    run-2:  raw-2 --packets--> b-decode --> l1-2 --events--> b-cal --> l2-2
                                               aux --attitude--^
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from skyweave.errors import NotFoundError, ParameterError, UnknownTaskError
from skyweave.model.lineage import LineageGraph
from skyweave.model.records import ActivityRecord, Changeset, ProductRecord, UsageRecord
from skyweave.model.specs import TaskSpec
from skyweave.store import Store


def _act(id: str, run_id: str, task: str, version: str = "1") -> ActivityRecord:
    return ActivityRecord(id=id, run_id=run_id, node=task, task_name=task, task_version=version,
                          state="succeeded", code_hash=f"hash-{task}-{version}")


def _prd(id: str, activity_id: str | None = None, run_id: str | None = None, type: str = "t",
         **fields: str) -> ProductRecord:
    return ProductRecord(id=id, uri=f"file:///d/{id}", type=type, activity_id=activity_id, run_id=run_id,
                         **fields)  # type: ignore[arg-type]


def _use(activity_id: str, product_id: str, role: str) -> UsageRecord:
    return UsageRecord(activity_id=activity_id, product_id=product_id, role=role)


def _two_runs(store: Store) -> None:
    store.apply(Changeset(
        activities=[_act("a-decode", "run-1", "decode"), _act("a-cal", "run-1", "calibrate"),
                    _act("a-detect", "run-1", "detect"),
                    _act("b-decode", "run-2", "decode"), _act("b-cal", "run-2", "calibrate", "2")],
        products=[_prd("raw-1", type="raw", obs_id="o1"), _prd("raw-2", type="raw", obs_id="o2"),
                  _prd("aux", type="aux.attitude"),
                  _prd("l1-1", "a-decode", "run-1", obs_id="o1", detector="cmos1"),
                  _prd("l2-1", "a-cal", "run-1"), _prd("l3-1", "a-detect", "run-1"),
                  _prd("l1-2", "b-decode", "run-2"), _prd("l2-2", "b-cal", "run-2")],
        usages=[_use("a-decode", "raw-1", "packets"), _use("a-cal", "l1-1", "events"),
                _use("a-cal", "aux", "attitude"), _use("a-detect", "l2-1", "image"),
                _use("b-decode", "raw-2", "packets"), _use("b-cal", "l1-2", "events"),
                _use("b-cal", "aux", "attitude")]))


def _ids(graph: LineageGraph) -> tuple[dict[str, int], dict[str, int]]:
    return {p.id: p.depth for p in graph.products}, {a.id: a.depth for a in graph.activities}


def _edges(graph: LineageGraph) -> set[tuple[str, str, str, str | None]]:
    return {(e.kind, e.activity_id, e.product_id, e.role) for e in graph.edges}


def test_upstream_lineage_follows_generation_and_usage_back_to_external_products(store: Store) -> None:
    _two_runs(store)
    graph = store.lineage("l2-2", direction="up")
    assert _ids(graph) == ({"l2-2": 0, "l1-2": 1, "aux": 1, "raw-2": 2}, {"b-cal": 1, "b-decode": 2})
    assert _edges(graph) == {
        ("wasGeneratedBy", "b-cal", "l2-2", None), ("used", "b-cal", "l1-2", "events"),
        ("used", "b-cal", "aux", "attitude"), ("wasGeneratedBy", "b-decode", "l1-2", None),
        ("used", "b-decode", "raw-2", "packets")}
    assert (graph.roots, graph.direction, graph.depth, graph.max_depth) == (["l2-2"], "up", 2, None)
    assert not graph.truncated
    assert not graph.cycle_detected
    cal = graph.activity("b-cal")
    assert cal is not None
    assert (cal.run_id, cal.task_name, cal.task_version, cal.code_hash) == ("run-2", "calibrate", "2",
                                                                           "hash-calibrate-2")
    l1 = store.lineage("l3-1").product("l1-1")
    assert l1 is not None
    assert (l1.type, l1.obs_id, l1.detector, l1.activity_id, l1.run_id) == ("t", "o1", "cmos1", "a-decode",
                                                                         "run-1")


def test_downstream_lineage_of_a_shared_aux_file_crosses_runs(store: Store) -> None:
    _two_runs(store)
    graph = store.lineage("aux", direction="down")
    assert _ids(graph) == ({"aux": 0, "l2-1": 1, "l2-2": 1, "l3-1": 2},
                           {"a-cal": 1, "b-cal": 1, "a-detect": 2})
    assert _edges(graph) == {
        ("used", "a-cal", "aux", "attitude"), ("wasGeneratedBy", "a-cal", "l2-1", None),
        ("used", "b-cal", "aux", "attitude"), ("wasGeneratedBy", "b-cal", "l2-2", None),
        ("used", "a-detect", "l2-1", "image"), ("wasGeneratedBy", "a-detect", "l3-1", None)}
    assert {a.run_id for a in graph.activities} == {"run-1", "run-2"}


def test_a_leaf_has_only_itself(store: Store) -> None:
    _two_runs(store)
    up = store.lineage("raw-1", direction="up")
    down = store.lineage("l3-1", direction="down")
    for graph, root in ((up, "raw-1"), (down, "l3-1")):
        assert _ids(graph) == ({root: 0}, {})
        assert (graph.edges, graph.depth, graph.truncated) == ([], 0, False)


def test_a_diamond_lists_each_node_once_at_its_shortest_depth(store: Store) -> None:
    store.apply(Changeset(
        activities=[_act("split", "r", "split"), _act("left", "r", "f"), _act("right", "r", "g"),
                    _act("merge", "r", "merge")],
        products=[_prd("src"), _prd("half-a", "split"), _prd("half-b", "split"), _prd("l", "left"),
                  _prd("r", "right"), _prd("out", "merge")],
        usages=[_use("split", "src", "x"), _use("left", "half-a", "x"), _use("right", "half-b", "x"),
                _use("right", "src", "calib"), _use("merge", "l", "a"), _use("merge", "r", "b")]))
    graph = store.lineage("out", direction="up")
    assert _ids(graph) == ({"out": 0, "l": 1, "r": 1, "half-a": 2, "half-b": 2, "src": 2},
                           {"merge": 1, "left": 2, "right": 2, "split": 3})
    assert len(graph.edges) == len(_edges(graph)) == 11
    assert not graph.cycle_detected
    down = store.lineage("src", direction="down")
    assert _ids(down)[0] == {"src": 0, "half-a": 1, "half-b": 1, "r": 1, "l": 2, "out": 2}
    assert not down.cycle_detected


def test_depth_limits_the_walk_and_says_what_was_cut(store: Store) -> None:
    _two_runs(store)
    zero = store.lineage("l2-2", direction="up", depth=0)
    assert _ids(zero) == ({"l2-2": 0}, {})
    assert (zero.edges, zero.truncated, zero.max_depth) == ([], True, 0)
    one = store.lineage("l2-2", direction="up", depth=1)
    assert _ids(one) == ({"l2-2": 0, "l1-2": 1, "aux": 1}, {"b-cal": 1})
    assert (one.depth, one.truncated) == (1, True)
    assert ("wasGeneratedBy", "b-decode", "l1-2", None) not in _edges(one)
    two = store.lineage("l2-2", direction="up", depth=2)
    assert (two.depth, two.truncated) == (2, False)
    assert _ids(two) == _ids(store.lineage("l2-2", direction="up", depth=None))
    assert store.lineage("l2-2", depth=50).truncated is False
    down = store.lineage("raw-1", direction="down", depth=1)
    assert (_ids(down), down.truncated) == (({"raw-1": 0, "l1-1": 1}, {"a-decode": 1}), True)
    assert store.lineage("raw-1", direction="down", depth=3).truncated is False


def test_impact_of_a_task_version_is_what_it_made_and_everything_downstream(store: Store) -> None:
    _two_runs(store)
    v1 = store.impact("calibrate", "1")
    assert _ids(v1) == ({"l2-1": 0, "l3-1": 1}, {"a-cal": 0, "a-detect": 1})
    assert (v1.roots, v1.direction) == (["l2-1"], "down")
    assert _edges(v1) == {("wasGeneratedBy", "a-cal", "l2-1", None), ("used", "a-detect", "l2-1", "image"),
                          ("wasGeneratedBy", "a-detect", "l3-1", None)}
    every = store.impact("calibrate", None)
    assert _ids(every) == ({"l2-1": 0, "l2-2": 0, "l3-1": 1}, {"a-cal": 0, "b-cal": 0, "a-detect": 1})
    assert sorted(every.roots) == ["l2-1", "l2-2"]
    decode = store.impact("decode")
    assert set(_ids(decode)[0]) == {"l1-1", "l1-2", "l2-1", "l2-2", "l3-1"}


def test_impact_of_an_unknown_task_says_what_exists(store: Store) -> None:
    _two_runs(store)
    with pytest.raises(UnknownTaskError, match="no task named 'nope'"):
        store.impact("nope")
    store.register_task(TaskSpec(name="fresh", version="1", ref="m:fresh"))
    assert store.impact("fresh", "1").products == []
    with pytest.raises(UnknownTaskError, match="has no version '9'"):
        store.impact("fresh", "9")


def test_a_corrupted_cycle_ends_and_is_flagged(store: Store) -> None:
    _two_runs(store)
    engine = create_engine(store.url)
    try:  # raw SQL, as corruption would be: raw-1 now claims to be made by a-cal, which used it
        with engine.begin() as conn:
            conn.execute(text("UPDATE products SET activity_id = 'a-cal' WHERE id = 'raw-1'"))
    finally:
        engine.dispose()
    up = store.lineage("l2-1", direction="up")
    down = store.lineage("aux", direction="down")
    limited = store.lineage("l2-1", direction="up", depth=10_000_000)
    impact = store.impact("decode", "1")  # each of these returning at all is the point
    assert _ids(up)[0] == {"l2-1": 0, "l1-1": 1, "aux": 1, "raw-1": 2}
    assert ("wasGeneratedBy", "a-cal", "raw-1", None) in _edges(up)
    for graph in (up, down, limited, impact):
        assert graph.cycle_detected, graph
    assert "raw-1" in _ids(down)[0]
    clean = store.lineage("l2-2", direction="up")
    assert not clean.cycle_detected


def test_a_self_loop_is_a_cycle(store: Store) -> None:
    store.apply(Changeset(activities=[_act("a", "r", "t")], products=[_prd("p", "a")],
                          usages=[_use("a", "p", "x")]))
    for direction in ("up", "down"):
        graph = store.lineage("p", direction=direction)
        assert graph.cycle_detected
        assert _ids(graph) == ({"p": 0}, {"a": 1})


def test_unknown_product_and_bad_arguments_are_clear_errors(store: Store) -> None:
    _two_runs(store)
    with pytest.raises(NotFoundError, match="no product 'prd-x'") as raised:
        store.lineage("prd-x", direction="down")
    assert raised.value.hint is not None
    assert "skyweave products list" in raised.value.hint
    with pytest.raises(ParameterError, match="depth"):
        store.lineage("l2-1", depth=-1)
    with pytest.raises(ParameterError, match="direction"):
        store.lineage("l2-1", direction="sideways")  # type: ignore[arg-type]


def test_dangling_references_do_not_break_the_graph(store: Store) -> None:
    store.apply(Changeset(activities=[_act("a", "r", "t")],
                          products=[_prd("p", "a"), _prd("orphan", "gone")],
                          usages=[_use("a", "missing", "x"), _use("a", "q", "y"), _use("gone", "q", "z")]))
    store.apply(Changeset(products=[_prd("q")]))
    graph = store.lineage("p", direction="up")
    assert _ids(graph) == ({"p": 0, "q": 1}, {"a": 1})
    assert {e.product_id for e in graph.edges} <= {"p", "q"}
    assert _ids(store.lineage("orphan", direction="up")) == ({"orphan": 0}, {})
    assert _ids(store.lineage("q", direction="down")) == ({"q": 0, "p": 1}, {"a": 1})
