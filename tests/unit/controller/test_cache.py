"""Smart recomputation in the core: same key -> reuse (recorded), opt-out and key parameters."""

from __future__ import annotations

from typing import Any

import msgspec

from skyweave import task, workflow
from skyweave.controller.cache import cache_key
from skyweave.model.messages import ProductRef
from tests.unit.controller import flows
from tests.unit.controller.harness import World


@task(version="1", cache=False)
def clock(x: int) -> int:
    return x


@workflow
def uncached(n: int = 2) -> Any:
    return clock.map(x=flows.items(n=n))


@task(version="1", cache_params=["x"])
def scaled(x: int, label: str) -> int:
    return x * 2


@workflow
def labelled(label: str = "a") -> Any:
    return scaled(x=3, label=label)


def test_second_identical_run_reuses_everything_and_records_it() -> None:
    w = World(reuse=True)
    first = w.submit(flows.fan, {"n": 4})
    w.drain()
    dispatched = len(w.dispatch_log)
    second = w.submit(flows.fan, {"n": 4})
    w.drain()
    assert w.run_state(first) == w.run_state(second) == "succeeded"
    assert len(w.dispatch_log) == dispatched, "nothing of the second run was executed"
    again = [a for a in w.acts() if a.run_id == second]
    assert len(again) == 6
    for act in again:
        (detour,) = act.detours
        assert detour.kind == "reused"
        original = w.activities[detour.provider_activity or ""]
        assert original.run_id == first
        assert original.cache_key == act.cache_key
        assert act.result == original.result
    assert [a.result for a in again if a.task_name == "total"] == [sum(i * i for i in range(4))]


def test_a_changed_parameter_reruns_only_what_depends_on_it() -> None:
    w = World(reuse=True)
    w.submit(flows.fan, {"n": 3})
    w.drain()
    before = len(w.dispatch_log)
    w.submit(flows.fan, {"n": 4})  # items(n) changes; squares 0..2 are the same calls again
    w.drain()
    ran = [d.task.name for d in w.dispatch_log[before:]]
    assert sorted(ran) == ["items", "square", "total"], "only items, the new square and the total"


def test_opted_out_tasks_always_run() -> None:
    w = World(reuse=True)
    w.submit(uncached, {"n": 2})
    w.drain()
    w.submit(uncached, {"n": 2})
    w.drain()
    assert sum(1 for d in w.dispatch_log if d.task.name == "clock") == 4
    assert all(a.cache_key is None for a in w.acts("clock"))


def test_only_declared_cache_params_matter() -> None:
    w = World(reuse=True)
    w.submit(labelled, {"label": "a"})
    w.drain()
    w.submit(labelled, {"label": "b"})
    w.drain()
    assert sum(1 for d in w.dispatch_log if d.task.name == "scaled") == 1


def test_key_covers_version_code_and_input_content() -> None:
    spec = flows.square.spec
    products = {"p1": ProductRef(id="p1", uri="x", checksum="sha256:aa"),
                "p2": ProductRef(id="p2", uri="y", checksum="sha256:aa"),
                "p3": ProductRef(id="p3", uri="z", checksum="sha256:bb")}
    base = cache_key(spec, {"x": {"$product": "p1"}}, products)
    assert base is not None
    assert cache_key(spec, {"x": {"$product": "p2"}}, products) == base, "same content, same key"
    assert cache_key(spec, {"x": {"$product": "p3"}}, products) != base
    other = type(spec)(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, "version": "9"})
    assert cache_key(other, {"x": {"$product": "p1"}}, products) != base
    unknown = {"p1": ProductRef(id="p1", uri="x")}
    assert cache_key(spec, {"x": {"$product": "p1"}}, unknown) is None, "no checksum: never reused"


def test_the_key_names_the_image_content_not_its_tag() -> None:
    """Same task, version, code and arguments in the same image tag, but other image content (the
    tag rebuilt): another key, so nothing made by the old content is reused."""
    base = msgspec.structs.replace(flows.square.spec, image="algo:latest")
    old, new = (msgspec.structs.replace(base, image_digest=f"sha256:{c * 64}") for c in "ab")
    keys = {cache_key(spec, {"x": 3}, {}) for spec in (old, new, base)}
    assert None not in keys and len(keys) == 3
    assert cache_key(old, {"x": 3}, {}) == cache_key(msgspec.structs.replace(old), {"x": 3}, {})
