"""Graph building: node ids stay what they always were, and cost stays linear in the calls."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from skyweave import task, workflow
from skyweave.authoring.graph import topological_order, validate_graph
from skyweave.errors import DefinitionError


@task(version="1")
def g_inc(i: int) -> int:
    return i + 1


def test_node_ids_of_repeated_calls_are_the_smallest_free_suffix() -> None:
    @workflow
    def wf() -> Any:
        g_inc(i=0)
        g_inc.options(name="g_inc_3")(i=1)  # a user's name taking a suffix the next call would get
        return [g_inc(i=k) for k in range(3)]

    graph, _ = wf.build({})
    assert list(graph["nodes"]) == ["g_inc", "g_inc_3", "g_inc_2", "g_inc_4", "g_inc_5"]


def test_a_chain_deeper_than_the_recursion_limit_builds_in_order() -> None:
    n = sys.getrecursionlimit() + 500

    @workflow
    def chain() -> Any:
        x: Any = 0
        for _ in range(n):
            x = g_inc(i=x)
        return x

    graph, _ = chain.build({})
    order = topological_order(graph)
    assert order == ["g_inc", *(f"g_inc_{k}" for k in range(2, n + 1))]


def test_a_cycle_is_named_node_by_node() -> None:
    def node(ref: str) -> dict[str, Any]:
        return {"task": "g_inc", "depth": 0, "args": {"i": {"ref": ref, "path": [], "iter": "bcast"}}}

    graph = {"nodes": {"a": node("c"), "b": node("a"), "c": node("b")}}
    with pytest.raises(DefinitionError, match=r"cycle: a -> c -> b -> a"):
        validate_graph(graph)
