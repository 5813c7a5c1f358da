"""``skyweave lineage`` and ``skyweave impact``: provenance graphs as a tree, JSON, DOT or SVG.

Drawings follow W3C PROV: an arrow points from the later thing to what it came from
(``activity -used-> product``, ``product -wasGeneratedBy-> activity``); time flows downwards, so
raw inputs are at the top.  ``--svg`` needs no Graphviz: it is laid out here, one layer per step
(layer = depth), nodes ordered in each layer by the mean position of their neighbours.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Annotated
from xml.sax.saxutils import escape as xml_escape

import typer
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.config.settings import load_settings
from skyweave.errors import ParameterError
from skyweave.model.lineage import LineageActivity, LineageGraph, LineageProduct
from skyweave.store import open_store


class DirectionChoice(enum.StrEnum):
    up = "up"
    down = "down"


DotOpt = Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT.")]
SvgOpt = Annotated[bool, typer.Option("--svg", help="Print an SVG drawing (no Graphviz needed).")]


@friendly
def lineage(
    product_id: Annotated[str, typer.Argument(help="Product id (see `skyweave products list`).")],
    direction: Annotated[DirectionChoice, typer.Option(
        "--direction", help="up: what made it; down: what depends on it.")] = DirectionChoice.up,
    depth: Annotated[int | None, typer.Option(
        "--depth", min=0, help="At most this many activity steps (default: all).")] = None,
    as_json: JsonOpt = False,
    dot: DotOpt = False,
    svg: SvgOpt = False,
    store: StoreOpt = None,
) -> None:
    """What made a product (--direction up) or what depends on it (down), across runs."""
    fmt = _format(as_json, dot, svg)
    st = open_store(load_settings(store=store).store)
    try:
        graph = st.lineage(product_id, direction=direction.value, depth=depth)
    finally:
        st.close()
    title = f"{'upstream' if direction == DirectionChoice.up else 'downstream'} lineage of {product_id}"
    _emit(graph, fmt, title)


@friendly
def impact(
    task: Annotated[str, typer.Option("--task", help="Task name.")],
    version: Annotated[str | None, typer.Option("--version", help="Task version (default: all).")] = None,
    as_json: JsonOpt = False,
    dot: DotOpt = False,
    svg: SvgOpt = False,
    store: StoreOpt = None,
) -> None:
    """What a task version produced and everything downstream of it."""
    fmt = _format(as_json, dot, svg)
    st = open_store(load_settings(store=store).store)
    try:
        graph = st.impact(task, version)
    finally:
        st.close()
    _emit(graph, fmt, f"impact of {task}@{version or '*'}")


def _format(as_json: bool, dot: bool, svg: bool) -> str:
    chosen = [name for name, on in (("json", as_json), ("dot", dot), ("svg", svg)) if on]
    if len(chosen) > 1:
        raise ParameterError(f"choose one output format, not {' and '.join('--' + c for c in chosen)}",
                             hint="give one of --json, --dot or --svg (or none for a tree)")
    return chosen[0] if chosen else "tree"


def _emit(graph: LineageGraph, fmt: str, title: str) -> None:
    if fmt == "json":
        output.print_json(graph)
    elif fmt == "dot":
        output.console.file.write(to_dot(graph, title))
    elif fmt == "svg":
        output.console.file.write(to_svg(graph, title))
    else:
        output.console.print(to_tree(graph, title))
        output.console.print(_summary(graph), highlight=False)
    if graph.cycle_detected:
        output.error("the provenance contains a cycle: the store is inconsistent (a product cannot be "
                     "its own ancestor); the graph shows what is reachable",
                     "check the products and activities shown twice for rows changed outside skyweave")


# -- labels ---------------------------------------------------------------------------------------

def _product_lines(p: LineageProduct) -> tuple[str, str]:
    where = " ".join(x for x in (p.obs_id, p.detector) if x)
    return p.type, f"{where}  {p.id}" if where else p.id


def _activity_lines(a: LineageActivity) -> tuple[str, str]:
    return f"{a.task_name}@{a.task_version}", f"{a.id}  {a.run_id}"


class _Nodes:
    """The graph's nodes by id (the graph lists them; drawings look them up often)."""

    def __init__(self, graph: LineageGraph) -> None:
        self.products = {p.id: p for p in graph.products}
        self.activities = {a.id: a for a in graph.activities}

    def lines(self, node: str) -> tuple[str, str]:
        p = self.products.get(node)
        if p is not None:
            return _product_lines(p)
        a = self.activities.get(node)
        return _activity_lines(a) if a is not None else (node, "")


# -- tree -----------------------------------------------------------------------------------------

def _tree_label(nodes: _Nodes, node: str, role: str | None) -> str:
    head, detail = (escape(s) for s in nodes.lines(node))
    prefix = f"[yellow]{escape(role)}[/]: " if role else ""
    act = nodes.activities.get(node)
    if act is None:
        return f"{prefix}[bold cyan]{head}[/] [dim]{detail}[/]"
    colour = {"succeeded": "green", "failed": "red"}.get(act.state, "yellow")
    return f"{prefix}[bold magenta]{head}[/] [dim]{detail}[/] [{colour}]{escape(act.state)}[/]"


def to_tree(graph: LineageGraph, title: str) -> Tree:
    """An indented tree from the roots in the walk's direction; a node met again is not repeated."""
    nexts, nodes = graph.next_nodes(), _Nodes(graph)
    tree = Tree(Text.from_markup(f"[bold]{escape(title)}[/]"))
    seen: set[str] = set()
    # impact: from the task version's activities (depth 0); lineage: from the product asked about
    starts = [a.id for a in graph.activities if a.depth == 0] or list(graph.roots)
    stack: list[tuple[Tree, str, str | None]] = [(tree, n, None) for n in reversed(starts)]
    while stack:
        parent, node, role = stack.pop()
        label = _tree_label(nodes, node, role)
        if node in seen:
            parent.add(Text.from_markup(label + " [dim](see above)[/]"))
            continue
        seen.add(node)
        branch = parent.add(Text.from_markup(label))
        stack.extend((branch, nxt, edge.role) for nxt, edge in reversed(nexts.get(node, [])))
    return tree


def _summary(graph: LineageGraph) -> str:
    text = (f"{len(graph.products)} products, {len(graph.activities)} activities, "
            f"depth {graph.depth}")
    if graph.truncated:
        text += f" (cut at depth {graph.max_depth if graph.max_depth is not None else graph.depth}: " \
                "there is more; raise --depth)"
    return text


# -- DOT ------------------------------------------------------------------------------------------

def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: LineageGraph, title: str) -> str:
    """Graphviz DOT: products as ellipses (type, obs_id, detector), activities as boxes
    (task@version); PROV arrows, inputs on top."""
    out = [f"digraph lineage {{\n  label={_q(title)};\n  labelloc=t;\n  rankdir=BT;\n"
           '  node [fontname="Helvetica", fontsize=10];\n  edge [fontname="Helvetica", fontsize=8];\n']
    roots = set(graph.roots)
    for p in graph.products:
        head, detail = _product_lines(p)
        style = ", style=bold" if p.id in roots else ""
        out.append(f"  {_q(p.id)} [shape=ellipse, label={_q(head + chr(10) + detail)}{style}];\n")
    for a in graph.activities:
        head, detail = _activity_lines(a)
        out.append(f"  {_q(a.id)} [shape=box, label={_q(head + chr(10) + detail)}];\n")
    for e in graph.edges:
        if e.kind == "used":
            label = _q("used " + (e.role or ""))
            out.append(f"  {_q(e.activity_id)} -> {_q(e.product_id)} [label={label}];\n")
        else:
            out.append(f"  {_q(e.product_id)} -> {_q(e.activity_id)} [label=\"wasGeneratedBy\"];\n")
    out.append("}\n")
    return "".join(out)


# -- SVG ------------------------------------------------------------------------------------------

_CHAR_W, _NODE_H, _GAP_X, _GAP_Y, _MARGIN, _MAX_CHARS = 6.6, 34.0, 18.0, 56.0, 20.0, 44


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS - 1] + "…"


def _layers(graph: LineageGraph) -> dict[str, int]:
    """Node -> row, 0 at the top: inputs above outputs (time flows down)."""
    raw = {p.id: 2 * p.depth for p in graph.products}
    raw.update({a.id: 2 * a.depth - 1 for a in graph.activities})
    low, high = min(raw.values(), default=0), max(raw.values(), default=0)
    return {n: (high - v if graph.direction == "up" else v - low) for n, v in raw.items()}


def _order(rows: list[list[str]], neighbours: dict[str, list[str]]) -> None:
    """Barycentre ordering, two sweeps down and up: fewer crossings, in place."""
    for sweep in (range(1, len(rows)), range(len(rows) - 2, -1, -1)) * 2:
        for i in sweep:
            pos = {n: k for k, n in enumerate(rows[i - 1 if sweep.step == 1 else i + 1])}
            def key(n: str, pos: dict[str, int] = pos) -> float:
                near = [pos[m] for m in neighbours.get(n, []) if m in pos]
                return sum(near) / len(near) if near else float("inf")
            rows[i].sort(key=key)


def to_svg(graph: LineageGraph, title: str) -> str:
    """A standalone SVG drawing of the graph (see the module docstring)."""
    layer = _layers(graph)
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for node in sorted(layer, key=lambda n: (layer[n], n)):
        rows[layer[node]].append(node)
    neighbours: dict[str, list[str]] = {}
    for e in graph.edges:
        neighbours.setdefault(e.activity_id, []).append(e.product_id)
        neighbours.setdefault(e.product_id, []).append(e.activity_id)
    _order(rows, neighbours)
    nodes = _Nodes(graph)
    labels = {n: tuple(_clip(s) for s in nodes.lines(n)) for n in layer}
    width_of = {n: max(len(s) for s in labels[n]) * _CHAR_W + 24 for n in layer}
    row_w = [sum(width_of[n] for n in r) + _GAP_X * max(len(r) - 1, 0) for r in rows]
    canvas_w = max(row_w, default=0) + 2 * _MARGIN
    centre: dict[str, tuple[float, float]] = {}
    for i, r in enumerate(rows):
        x = (canvas_w - row_w[i]) / 2
        for n in r:
            centre[n] = (x + width_of[n] / 2, _MARGIN + 28 + i * (_NODE_H + _GAP_Y) + _NODE_H / 2)
            x += width_of[n] + _GAP_X
    height = _MARGIN * 2 + 28 + len(rows) * (_NODE_H + _GAP_Y)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas_w:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {canvas_w:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">\n',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
           '</marker></defs>\n<rect width="100%" height="100%" fill="white"/>\n',
           f'<text x="{_MARGIN}" y="{_MARGIN + 6}" font-size="14" font-weight="bold">'
           f'{xml_escape(title)}</text>\n']
    out += _svg_edges(graph, centre)
    out += _svg_nodes(graph, nodes, centre, width_of, labels)
    out.append("</svg>\n")
    return "".join(out)


def _svg_edges(graph: LineageGraph, centre: dict[str, tuple[float, float]]) -> Iterable[str]:
    half = _NODE_H / 2
    for e in graph.edges:
        src, dst = ((e.activity_id, e.product_id) if e.kind == "used" else (e.product_id, e.activity_id))
        (x1, y1), (x2, y2) = centre[src], centre[dst]
        down = 1 if y2 > y1 else -1
        y1, y2 = y1 + down * half, y2 - down * half
        colour = "#555" if e.kind == "used" else "#999"
        yield (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
               f'marker-end="url(#arrow)"><title>{e.kind} {xml_escape(e.role or "")}</title></line>\n')
        if e.role:
            yield (f'<text x="{(x1 + x2) / 2 + 3:.1f}" y="{(y1 + y2) / 2:.1f}" font-size="9" '
                   f'fill="#a60">{xml_escape(_clip(e.role))}</text>\n')


def _svg_nodes(graph: LineageGraph, nodes: _Nodes, centre: dict[str, tuple[float, float]],
               width_of: dict[str, float], labels: dict[str, tuple[str, ...]]) -> Iterable[str]:
    roots = set(graph.roots)
    for node, (cx, cy) in centre.items():
        w = width_of[node]
        is_product = node in nodes.products
        stroke = 2.5 if node in roots else 1.2
        if is_product:
            shape = (f'<ellipse cx="{cx:.1f}" cy="{cy:.1f}" rx="{w / 2:.1f}" ry="{_NODE_H / 2:.1f}" '
                     f'fill="#e8f4fc" stroke="#2a7ab0" stroke-width="{stroke}"/>')
        else:
            shape = (f'<rect x="{cx - w / 2:.1f}" y="{cy - _NODE_H / 2:.1f}" width="{w:.1f}" '
                     f'height="{_NODE_H:.1f}" rx="3" fill="#f6ecf9" stroke="#8a3ea8" '
                     f'stroke-width="{stroke}"/>')
        head, detail = labels[node]
        yield (f'<g><title>{xml_escape(node)}</title>{shape}'
               f'<text x="{cx:.1f}" y="{cy - 2:.1f}" font-size="11" text-anchor="middle" '
               f'font-weight="bold">{xml_escape(head)}</text>'
               f'<text x="{cx:.1f}" y="{cy + 11:.1f}" font-size="9" text-anchor="middle" fill="#444">'
               f'{xml_escape(detail)}</text></g>\n')
