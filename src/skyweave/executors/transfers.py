"""Inputs brought to the site an activity runs at (docs/operations.md, "Several sites").

When the controller places an activity away from some of its inputs (its task pins another site),
the worker copies each input held by another site's storage root into its own root before the
activity starts, and records each move — which product, from which site to which, how many bytes,
when and how long — on the attempt (``Usage.custom["transfers"]``, a JSON list), from which the
provenance export makes one transfer activity per move (``provenance/w3c.py``).  Only inputs on
a local path are copied here; others are read through the Storage port as before.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from skyweave.model import messages as m
from skyweave.model.sites import site_of

log = logging.getLogger(__name__)

TRANSFERS = "transfers"
"""The ``Usage.custom`` key of an attempt's moves (a JSON list of objects)."""


def bring_inputs(dispatch: m.DispatchActivity, *, site: str, roots: Mapping[str, str],
                 into: Path) -> tuple[m.DispatchActivity, list[dict[str, Any]]]:
    """``dispatch`` with its inputs held by other sites copied under ``into/transfers/``, and the
    moves made.  An input that cannot be copied is left where it is (the task reads it there, or
    fails saying it is missing) and logged."""
    refs = dict(dispatch.products)
    moves: list[dict[str, Any]] = []
    for pid, ref in dispatch.products.items():
        source_site = site_of(ref.uri, roots)
        if not source_site or source_site == site or ("://" in ref.uri and not ref.uri.startswith("file://")):
            continue
        source = Path(ref.uri.removeprefix("file://"))
        target = into / TRANSFERS / dispatch.activity_id / pid / source.name
        started, clock = time.time(), time.perf_counter()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
                size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            else:
                shutil.copyfile(source, target)
                size = target.stat().st_size
        except OSError as exc:
            log.warning("could not bring input %s of %s from site %s: %s", pid, dispatch.activity_id,
                        source_site, exc)
            continue
        refs[pid] = msgspec.structs.replace(ref, uri=str(target))
        moves.append({"product": pid, "from": source_site, "to": site, "bytes": size,
                      "seconds": time.perf_counter() - clock, "started_at": started,
                      "source": ref.uri, "destination": str(target)})
    if not moves:
        return dispatch, moves
    return msgspec.structs.replace(dispatch, products=refs), moves


def with_moves(outcome: m.ActivityFinished | m.ActivityFailed, moves: list[dict[str, Any]]
               ) -> m.ActivityFinished | m.ActivityFailed:
    """The outcome with its attempt's moves in its usage."""
    usage = msgspec.structs.replace(outcome.usage, custom={
        **outcome.usage.custom, TRANSFERS: json.dumps(moves),
        "transfer_bytes": sum(int(x["bytes"]) for x in moves)})
    return msgspec.structs.replace(outcome, usage=usage)
