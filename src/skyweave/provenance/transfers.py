"""Transfers in provenance: one ``activity`` per input an attempt had brought from another site
(``executors/transfers.py`` records them in the attempt's usage, key ``transfers``).

=====================  ===========================================================================
transfer               ``activity(swact:<activity id>.attempt.<n>.transfer.<k>, start, end)``,
                       ``prov:type=sw:Transfer``; ``sw:fromSite``, ``sw:toSite``, ``sw:bytes``,
                       ``sw:seconds``, ``sw:source``, ``sw:destination``;
                       ``used(transfer, product)``, ``wasAssociatedWith(transfer, worker,
                       [prov:role="transfer"])`` and ``wasInformedBy(attempt, transfer)``
=====================  ===========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prov.identifier import Namespace, QualifiedName
from prov.model import PROV, ProvActivity, ProvAgent, ProvDocument

from skyweave.model.records import AttemptRecord

SW = Namespace("sw", "https://skyweave.org/ns/prov#")


def moves_of(attempt: AttemptRecord) -> list[dict[str, Any]]:
    """The moves recorded on an attempt (none if it had no input from another site)."""
    text = (attempt.usage or {}).get("transfers")
    if not isinstance(text, str):
        return []
    try:
        moves = json.loads(text)
    except ValueError:
        return []
    return [x for x in moves if isinstance(x, dict)] if isinstance(moves, list) else []


def add_transfers(doc: ProvDocument, attempt: AttemptRecord, sub: ProvActivity, *, name: str,
                  worker: ProvAgent | None, activity: Callable[[str], QualifiedName],
                  product: Callable[[str], QualifiedName], rel: Callable[..., QualifiedName]) -> None:
    """The transfer activities of ``attempt`` (whose activity is ``sub``, identified as ``name``):
    ``activity``, ``product`` and ``rel`` make the document's qualified names (``w3c.Ids``,
    ``w3c.rel``)."""
    for k, move in enumerate(moves_of(attempt)):
        started = float(move.get("started_at", 0.0))
        seconds = float(move.get("seconds", 0.0))
        attrs: dict[Any, Any] = {
            PROV["type"]: SW["Transfer"],
            PROV["label"]: f"transfer of {move.get('product')} from {move.get('from')} to {move.get('to')}",
            SW["fromSite"]: str(move.get("from", "")), SW["toSite"]: str(move.get("to", "")),
            SW["bytes"]: int(move.get("bytes", 0)), SW["seconds"]: seconds,
            SW["source"]: str(move.get("source", "")), SW["destination"]: str(move.get("destination", "")),
        }
        start = datetime.fromtimestamp(started, UTC) if started else None
        end = datetime.fromtimestamp(started + seconds, UTC) if started else None
        local = f"{name}.transfer.{k}"
        transfer = doc.activity(activity(local), start, end, attrs)
        doc.usage(transfer, product(str(move.get("product", ""))), start, identifier=rel("used", local))
        if worker is not None:
            doc.association(transfer, worker, identifier=rel("assoc", local, "worker"),
                            other_attributes={PROV["role"]: "transfer"})
        doc.communication(sub, transfer, identifier=rel("informed", local))
