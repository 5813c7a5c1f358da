"""ProvSAP: the IVOA Provenance Simple Access Protocol (working draft), as one function that an
HTTP server mounts at ``GET /provsap``.

``provsap(store, params)`` takes the request's query parameters as ``(name, value)`` pairs and
returns the response body and media type.  Parameter names are case-insensitive, as in every IVOA
DAL service; so are the enumerated values.

=================  ========================================================================  ==========
parameter          meaning                                                                   default
=================  ========================================================================  ==========
``ID``             what to describe, repeatable: a product, activity or run id               (required)
                   (``prd-…``, ``act-…``, ``run-…``) or its IVOA identifier
                   (``ivo://<authority>/product?prd-…``); a run stands for all its activities
``DEPTH``          how many relations to follow from each ID (``wasGeneratedBy``, ``used``;  ``ALL``
                   ``0``: the ID's own record), or ``ALL``
``DIRECTION``      ``BACK`` (what it was made from) or ``FORTH`` (what was made from it);    ``BACK``
                   OPUS's ``FORWARD`` is accepted for ``FORTH``
``MODEL``          ``IVOA`` (ProvDM: description classes, parameters; its PROV-JSON in      ``IVOA``
                   voprov's dialect, ``voprov_json.py``) or ``W3C`` (plain PROV)
``RESPONSEFORMAT`` ``PROV-JSON``, ``PROV-N``, ``PROV-XML`` or ``PROV-SVG`` (a drawing)       ``PROV-JSON``
=================  ========================================================================  ==========

OPUS's ``MEMBERS``, ``STEPS`` and ``AGENT`` are accepted and have no effect here (skyweave has no
collections nor activity flows, and always describes the agents); any other parameter is an error
naming the known ones, as is a bad value.  An ID the store does not hold is a ``NotFoundError``.
The walk is bounded by ``collect.MAX_NODES`` records; a walk cut there is marked ``truncated``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from skyweave.errors import NotFoundError, ParameterError
from skyweave.model.records import ActivityRecord, ProductRecord
from skyweave.provenance import provdm, w3c
from skyweave.provenance.collect import MAX_NODES, Bundle, add_attempts_and_tasks
from skyweave.provenance.ids import DEFAULT_AUTHORITY, InvalidIdentifierError, check_authority, parse
from skyweave.provenance.svg import to_svg
from skyweave.provenance.voprov_json import to_voprov_json
from skyweave.store.base import Store

Direction = Literal["BACK", "FORTH"]
Model = Literal["IVOA", "W3C"]

FORMATS: dict[str, tuple[str, str]] = {
    "PROV-JSON": ("json", "application/json"),
    "PROV-N": ("provn", "text/provenance-notation"),
    "PROV-XML": ("xml", "application/provenance+xml"),
    "PROV-SVG": ("svg", "image/svg+xml"),
}
"""RESPONSEFORMAT -> (serialization, media type)."""

IGNORED = ("MEMBERS", "STEPS", "AGENT")
KNOWN = ("ID", "DEPTH", "DIRECTION", "MODEL", "RESPONSEFORMAT", *IGNORED)


class ProvSapError(ParameterError):
    """A ProvSAP request that cannot be answered as asked (HTTP 400)."""


@dataclass(frozen=True)
class ProvSapQuery:
    ids: tuple[str, ...]
    depth: int | None
    """Relations to follow from each ID; ``None`` for ALL."""
    direction: Direction = "BACK"
    model: Model = "IVOA"
    response_format: str = "PROV-JSON"


@dataclass(frozen=True)
class ProvSapResponse:
    body: str
    media_type: str
    truncated: bool = False


def parse_query(params: Iterable[tuple[str, str]] | Mapping[str, str]) -> ProvSapQuery:
    """The query of a request's parameters; ``ProvSapError`` saying what is wrong and what is allowed."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        key = name.strip().upper()
        if key not in KNOWN:
            raise ProvSapError(f"unknown ProvSAP parameter {name!r}",
                               hint="the parameters are " + ", ".join(KNOWN))
        values.setdefault(key, []).append(value.strip())
    ids = tuple(v for v in values.get("ID", []) if v)
    if not ids:
        raise ProvSapError("ProvSAP needs at least one ID",
                           hint="add ID=<product, activity or run id> (repeat ID for several)")
    direction = _choice(values, "DIRECTION", "BACK", {"BACK": "BACK", "FORTH": "FORTH", "FORWARD": "FORTH"})
    model = _choice(values, "MODEL", "IVOA", {"IVOA": "IVOA", "W3C": "W3C"})
    return ProvSapQuery(ids=ids, depth=_depth(_single(values, "DEPTH", "ALL")),
                        direction="FORTH" if direction == "FORTH" else "BACK",
                        model="W3C" if model == "W3C" else "IVOA",
                        response_format=_choice(values, "RESPONSEFORMAT", "PROV-JSON",
                                                {f: f for f in FORMATS}))


def _single(values: dict[str, list[str]], name: str, default: str) -> str:
    given = values.get(name, [])
    if len(given) > 1:
        raise ProvSapError(f"ProvSAP parameter {name} is given {len(given)} times",
                           hint=f"give {name} once (only ID repeats)")
    return given[0] if given and given[0] else default


def _choice(values: dict[str, list[str]], name: str, default: str, allowed: dict[str, str]) -> str:
    value = _single(values, name, default).upper()
    if value not in allowed:
        raise ProvSapError(f"{name}={value!r} is not allowed", hint=f"{name} is one of {', '.join(allowed)}")
    return allowed[value]


def _depth(text: str) -> int | None:
    if text.upper() == "ALL":
        return None
    if not text.isdigit():
        raise ProvSapError(f"DEPTH={text!r} is not a number of relations",
                           hint="DEPTH is 0, a positive whole number, or ALL")
    return int(text)


def provsap(store: Store, params: Iterable[tuple[str, str]] | Mapping[str, str] | ProvSapQuery, *,
            authority: str = DEFAULT_AUTHORITY, max_nodes: int = MAX_NODES) -> ProvSapResponse:
    """The ProvSAP response to a request (see the module docstring)."""
    query = params if isinstance(params, ProvSapQuery) else parse_query(params)
    bundle = collect(store, query, authority=authority, max_nodes=max_nodes)
    fmt, media_type = FORMATS[query.response_format]
    doc = provdm.to_provdm(bundle) if query.model == "IVOA" else w3c.to_prov(bundle)
    if fmt == "svg":
        body = to_svg(doc, title=f"{query.direction} from {', '.join(query.ids)}")
    elif fmt == "json" and query.model == "IVOA":
        body = to_voprov_json(doc)  # ProvDM's own record types, as voprov (and OPUS) write them
    else:
        body = w3c.serialize(doc, fmt)
    return ProvSapResponse(body, media_type, bundle.truncated)


Node = tuple[Literal["product", "activity"], str]


def collect(store: Store, query: ProvSapQuery, *, authority: str = DEFAULT_AUTHORITY,
            max_nodes: int = MAX_NODES) -> Bundle:
    """The records ``DEPTH`` relations away from the IDs in ``DIRECTION`` (breadth first, each
    record once, so a cycle in a corrupted store ends the walk)."""
    bundle = Bundle(scope="provsap:" + ",".join(query.ids), authority=check_authority(authority))
    queue: deque[tuple[Node, int]] = deque((node, 0) for ident in query.ids
                                           for node in _roots(store, ident, authority, bundle))
    while queue:
        (kind, ident), depth = queue.popleft()
        if query.depth is not None and depth >= query.depth:
            continue
        for found in _next(store, bundle, kind, ident, query.direction):
            if len(bundle.activities) + len(bundle.products) >= max_nodes:
                bundle.truncated = True
                queue.clear()
                break
            if _add(bundle, found):
                queue.append((_node(found), depth + 1))
    usages = {(u.activity_id, u.product_id, u.role): u for a in bundle.activities
              for u in store.list_usages(activity_id=a)}
    bundle.usages = [u for u in usages.values() if u.product_id in bundle.products]
    for activity in bundle.activities.values():
        if activity.run_id not in bundle.runs:
            bundle.runs[activity.run_id] = store.get_run(activity.run_id)
    add_attempts_and_tasks(store, bundle)
    return bundle


def _node(record: ProductRecord | ActivityRecord) -> Node:
    return ("product" if isinstance(record, ProductRecord) else "activity", record.id)


def _add(bundle: Bundle, record: ProductRecord | ActivityRecord) -> bool:
    """Put ``record`` in the bundle; ``False`` if it was there already."""
    table: dict[str, ProductRecord] | dict[str, ActivityRecord] = (
        bundle.products if isinstance(record, ProductRecord) else bundle.activities)
    if record.id in table:
        return False
    table[record.id] = record  # type: ignore[assignment]
    return True


def _roots(store: Store, ident: str, authority: str, bundle: Bundle) -> list[Node]:
    """The records an ID names (a run: its activities), added to the bundle."""
    local, kind = ident, None
    if ident.lower().startswith("ivo://"):
        try:
            ivo = parse(ident)
        except InvalidIdentifierError as exc:
            raise ProvSapError(exc.message, hint=exc.hint) from None
        if ivo.authority.lower() != authority.lower() or ivo.kind not in ("product", "activity", "run"):
            raise NotFoundError(f"{ident} is not a product, activity or run of this service",
                                hint=f"identifiers here are ivo://{authority}/product?…, /activity?… "
                                     "or /run?…")
        local, kind = ivo.local, ivo.kind
    for candidate in ((kind,) if kind else ("product", "activity", "run")):
        try:
            if candidate == "product":
                record: ProductRecord | ActivityRecord = store.get_product(local)
            elif candidate == "activity":
                record = store.get_activity(local)
            else:
                run = store.get_run(local)
                bundle.runs[run.id] = run
                acts = store.list_activities(run_id=run.id)
                return [_node(a) for a in acts if _add(bundle, a)]
        except NotFoundError:
            continue
        _add(bundle, record)
        return [_node(record)]
    raise NotFoundError(f"no product, activity or run {ident!r} in this store",
                        hint="give an id from `skyweave products list` or `skyweave status`, or its "
                             "ivo:// identifier from a provenance export")


def _next(store: Store, bundle: Bundle, kind: str, ident: str,
          direction: Direction) -> list[ProductRecord | ActivityRecord]:
    """The records one relation away: BACK, a product's generating activity and an activity's
    inputs; FORTH, the activities that used a product and the products an activity generated."""
    if direction == "BACK":
        if kind == "product":
            generator = bundle.products[ident].activity_id
            return [bundle.activities.get(generator) or store.get_activity(generator)] if generator else []
        return [bundle.products.get(u.product_id) or store.get_product(u.product_id)
                for u in store.list_usages(activity_id=ident)]
    if kind == "product":
        return [bundle.activities.get(u.activity_id) or store.get_activity(u.activity_id)
                for u in store.list_usages(product_id=ident)]
    return list(reversed(store.find_products(activity_id=ident, state=None)))
