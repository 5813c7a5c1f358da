"""The pictures of the dashboard as data: a run's graph collapsed server-side (one node per
workflow step, however wide its fan-out, with counts per state), a timeline of the steps, and a
product's lineage - all built from a handful of grouped rows, never from every activity, so a
100,000-activity run costs the browser the same as a ten-activity one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from skyweave.authoring.graph import upstream
from skyweave.model.lineage import LineageGraph
from skyweave.store.base import ActivityGroup

TIMES = "\N{MULTIPLICATION SIGN}"
"""Between a step's task and how many activities it made: ``calibrate x12`` with the multiplication sign."""

ORDER = (
    "failed",
    "running",
    "dispatched",
    "retry_wait",
    "backtracking",
    "parked",
    "queued",
    "created",
    "succeeded",
    "skipped",
    "reused",
    "cancelled",
)
"""Which state colours a node with activities in several: the first of these it has."""


def _dominant(counts: dict[str, int]) -> str:
    for state in ORDER:
        if counts.get(state):
            return state
    return next(iter(counts), "pending")


def run_elements(graph: dict[str, Any], groups: Sequence[ActivityGroup]) -> list[dict[str, Any]]:
    """Cytoscape elements of a run: a node per workflow step (``fan-out`` steps say how many
    activities they made, by state), an edge per data dependency."""
    counts: dict[str, dict[str, int]] = {}
    for g in groups:
        counts.setdefault(g.node, {})[g.state] = counts.get(g.node, {}).get(g.state, 0) + g.count
    nodes: dict[str, Any] = graph.get("nodes", {})
    elements: list[dict[str, Any]] = []
    for node_id, spec in nodes.items():
        by_state = counts.get(node_id, {})
        total = sum(by_state.values())
        task = str(spec.get("task", node_id))
        label = task if total <= 1 and not spec.get("depth") else f"{task} {TIMES}{total}"
        detail = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) or "not started"
        elements.append(
            {
                "data": {
                    "id": node_id,
                    "label": label,
                    "state": _dominant(by_state) if by_state else "pending",
                    "total": total,
                    "detail": detail,
                    "task": task,
                }
            }
        )
    for node_id, spec in nodes.items():
        for ref in dict.fromkeys(upstream(spec)):
            if ref in nodes:
                elements.append({"data": {"id": f"{ref}->{node_id}", "source": ref, "target": node_id}})
    # activities of nodes the graph does not name (a loop's iterations, injected steps)
    for node_id in counts.keys() - nodes.keys():
        by_state = counts[node_id]
        elements.append(
            {
                "data": {
                    "id": node_id,
                    "label": f"{node_id} {TIMES}{sum(by_state.values())}",
                    "state": _dominant(by_state),
                    "total": sum(by_state.values()),
                    "detail": ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())),
                    "task": node_id,
                }
            }
        )
    return elements


def timeline(groups: Sequence[ActivityGroup], *, now: float | None = None) -> list[dict[str, Any]]:
    """One bar per workflow step: from its first activity's start to its last one's end (now, while
    some still run), with how many activities it made."""
    now = time.time() if now is None else now
    spans: dict[str, dict[str, Any]] = {}
    for g in groups:
        span = spans.setdefault(
            g.node,
            {"node": g.node, "task": g.task_name, "start": None, "end": None, "count": 0, "open": False},
        )
        span["count"] += g.count
        if g.first_started is not None:
            span["start"] = g.first_started if span["start"] is None else min(span["start"], g.first_started)
        if g.last_ended is not None:
            span["end"] = g.last_ended if span["end"] is None else max(span["end"], g.last_ended)
        if g.state in ("running", "dispatched", "queued", "created", "retry_wait", "backtracking", "parked"):
            span["open"] = True
    bars = [s for s in spans.values() if s["start"] is not None]
    for bar in bars:
        if bar["open"] or bar["end"] is None:
            bar["end"] = now
    bars.sort(key=lambda b: (b["start"], b["node"]))
    if not bars:
        return []
    t0 = min(b["start"] for b in bars)
    t1 = max(b["end"] for b in bars)
    width = max(t1 - t0, 1e-3)
    for bar in bars:
        bar["left"] = round(100 * (bar["start"] - t0) / width, 2)
        bar["width"] = max(0.5, round(100 * (bar["end"] - bar["start"]) / width, 2))
        bar["seconds"] = round(bar["end"] - bar["start"], 2)
    return bars


def lineage_elements(graph: LineageGraph) -> list[dict[str, Any]]:
    """Cytoscape elements of a lineage subgraph: products (boxes) and activities (rounded)."""
    elements: list[dict[str, Any]] = []
    roots = set(graph.roots)
    for p in graph.products:
        label = p.name or p.type
        elements.append(
            {
                "data": {
                    "id": p.id,
                    "label": f"{label}\n{p.type}",
                    "kind": "product",
                    "root": p.id in roots,
                    "href": f"/ui/products/{p.id}",
                }
            }
        )
    for a in graph.activities:
        elements.append(
            {
                "data": {
                    "id": a.id,
                    "label": f"{a.task_name} v{a.task_version}\n{a.key or ''}".strip(),
                    "kind": "activity",
                    "state": a.state,
                    "href": f"/ui/activities/{a.id}",
                }
            }
        )
    for e in graph.edges:
        if e.kind == "used":
            source, target = e.product_id, e.activity_id
        else:
            source, target = e.activity_id, e.product_id
        elements.append(
            {
                "data": {
                    "id": f"{source}->{target}:{e.role or ''}",
                    "source": source,
                    "target": target,
                    "label": e.role or "",
                }
            }
        )
    return elements
