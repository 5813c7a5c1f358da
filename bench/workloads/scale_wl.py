"""The three graph shapes of ``bench/scale_bench.py`` (tasks at module level, so workers can import
them): a ``.map`` fan-out, a gather per group of a nested fan-out, and a graph built by a Python loop."""

from __future__ import annotations

from typing import Any

from skyweave import each, gather, task, workflow
from skyweave.authoring.workflow import Workflow


@task(version="1")
def sc_indices(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def sc_split(x: int, group: int) -> list[int]:
    return list(range(group))


@task(version="1")
def sc_split_distinct(x: int, group: int) -> list[int]:
    return [x * group + j for j in range(group)]


@task(version="1")
def sc_noop(i: int) -> int:
    return i


@task(version="1")
def sc_total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def sc_flat(n: int = 1000) -> Any:
    return sc_total(xs=sc_noop.map(i=sc_indices(n=n)))


@workflow
def sc_nested(n: int = 1000, group: int = 100) -> Any:
    groups = sc_split.map(x=sc_indices(n=max(1, n // group)), group=group)
    leaves = sc_noop.map(i=each(groups))
    return sc_total(xs=sc_total.map(xs=gather(leaves)))


@workflow
def sc_nested_distinct(n: int = 1000, group: int = 100) -> Any:
    """``sc_nested`` with every leaf's argument distinct (``sc_nested``'s groups repeat 0..group-1,
    so after the first group the leaves are reused from the cache, not run)."""
    groups = sc_split_distinct.map(x=sc_indices(n=max(1, n // group)), group=group)
    leaves = sc_noop.map(i=each(groups))
    return sc_total(xs=sc_total.map(xs=gather(leaves)))


@workflow
def sc_loop(n: int = 1000) -> Any:
    return sc_total(xs=[sc_noop(i=i) for i in range(n)])


SHAPES: dict[str, Workflow] = {"flat": sc_flat, "nested": sc_nested, "loop": sc_loop,
                               "nested-distinct": sc_nested_distinct}
TASKS = {t.spec.name: t for t in (sc_indices, sc_split, sc_split_distinct, sc_noop, sc_total)}
