"""PROV-SVG: a provenance document drawn as SVG, with no graph-layout program to install.

The drawing follows the W3C PROV conventions (entities yellow ellipses, activities blue
rectangles, agents orange pentagons; relations as arrows from the subject to the object, labelled
with the relation).  Records are placed in columns by their distance (along relations) from the
first records of the document, the order in which the export wrote them; a record no relation
reaches gets a column of its own at the end.  Cost: linear in records and relations.
"""

from __future__ import annotations

from collections import defaultdict, deque
from xml.sax.saxutils import escape

from prov.model import ProvActivity, ProvAgent, ProvDocument, ProvElement, ProvRelation

COLUMN = 260
ROW = 70
WIDTH, HEIGHT = 200, 44
MARGIN = 40

_STYLE = {
    "entity": 'fill="#fffc87" stroke="#808080"',
    "activity": 'fill="#9fb1fc" stroke="#0000ff"',
    "agent": 'fill="#fed37f" stroke="#000000"',
}


def _kind(element: ProvElement) -> str:
    if isinstance(element, ProvActivity):
        return "activity"
    if isinstance(element, ProvAgent):
        return "agent"
    return "entity"


def _label(element: ProvElement) -> str:
    text = str(element.identifier)
    local = text.rpartition("?")[2] if "?" in text else text.rpartition(":")[2]
    return local if len(local) <= 28 else local[:12] + "…" + local[-12:]


def _shape(kind: str, x: float, y: float) -> str:
    style = _STYLE[kind]
    if kind == "activity":
        return f'<rect x="{x:.0f}" y="{y:.0f}" width="{WIDTH}" height="{HEIGHT}" {style}/>'
    if kind == "agent":
        w, h = WIDTH, HEIGHT
        points = [(x, y + h * 0.35), (x + w / 2, y), (x + w, y + h * 0.35), (x + w * 0.85, y + h),
                  (x + w * 0.15, y + h)]
        return f'<polygon points="{" ".join(f"{a:.0f},{b:.0f}" for a, b in points)}" {style}/>'
    return (f'<ellipse cx="{x + WIDTH / 2:.0f}" cy="{y + HEIGHT / 2:.0f}" rx="{WIDTH / 2}" '
            f'ry="{HEIGHT / 2}" {style}/>')


def to_svg(doc: ProvDocument, *, title: str = "provenance") -> str:
    """The SVG text of ``doc`` (bundles flattened into it)."""
    flat = doc.flattened()
    elements = [r for r in flat.get_records() if isinstance(r, ProvElement)]
    relations = [r for r in flat.get_records() if isinstance(r, ProvRelation)]
    known = {e.identifier: e for e in elements}
    edges: list[tuple[object, object, str]] = []
    neighbours: dict[object, list[object]] = defaultdict(list)
    for relation in relations:
        ends = [value for _, value in relation.formal_attributes[:2]]
        if len(ends) == 2 and ends[0] in known and ends[1] in known:
            edges.append((ends[0], ends[1], relation.get_type().localpart))
            neighbours[ends[0]].append(ends[1])
            neighbours[ends[1]].append(ends[0])
    column: dict[object, int] = {}
    for element in elements:  # each connected part laid out from its first record
        if element.identifier in column:
            continue
        start = max(column.values(), default=-1) + 1 if column else 0
        column[element.identifier] = start
        queue: deque[object] = deque([element.identifier])
        while queue:
            here = queue.popleft()
            for there in neighbours[here]:
                if there not in column:
                    column[there] = column[here] + 1
                    queue.append(there)
    rows: dict[int, int] = defaultdict(int)
    place: dict[object, tuple[float, float]] = {}
    for element in elements:
        col = column[element.identifier]
        place[element.identifier] = (MARGIN + col * COLUMN, MARGIN + 30 + rows[col] * ROW)
        rows[col] += 1
    width = MARGIN * 2 + (max(column.values(), default=0) + 1) * COLUMN
    height = MARGIN * 2 + 30 + max(rows.values(), default=1) * ROW
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f"<title>{escape(title)}</title>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
             'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
             f'<text x="{MARGIN}" y="{MARGIN}" font-size="14">{escape(title)}</text>']
    for subject, obj, label in edges:
        (x1, y1), (x2, y2) = place[subject], place[obj]
        ax, ay = x1 + (WIDTH if x2 > x1 else 0), y1 + HEIGHT / 2
        bx, by = x2 + (WIDTH if x1 > x2 else 0), y2 + HEIGHT / 2
        parts.append(f'<g class="relation"><line x1="{ax:.0f}" y1="{ay:.0f}" x2="{bx:.0f}" y2="{by:.0f}" '
                     f'stroke="#555" marker-end="url(#arrow)"/><text x="{(ax + bx) / 2:.0f}" '
                     f'y="{(ay + by) / 2 - 4:.0f}" font-size="10" fill="#333">{escape(label)}</text></g>')
    for element in elements:
        x, y = place[element.identifier]
        kind = _kind(element)
        parts.append(f'<g class="{kind}"><title>{escape(str(element.identifier))}</title>{_shape(kind, x, y)}'
                     f'<text x="{x + WIDTH / 2:.0f}" y="{y + HEIGHT / 2 + 4:.0f}" text-anchor="middle">'
                     f"{escape(_label(element))}</text></g>")
    parts.append("</svg>")
    return "\n".join(parts)
