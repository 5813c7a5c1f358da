"""Inputs brought to the site an activity runs at (docs/operations.md, "Several sites").

When the controller places an activity away from some of its inputs (its task pins another site,
or its site had no live worker), the worker copies each input held by another site's storage —
a folder or an object store (``s3://``), read through the Storage port — into its own site's
storage before the activity starts, and records each move — which product, from which site to
which, how many bytes, when and how long — on the attempt (``Usage.custom["transfers"]``, a JSON
list), from which the provenance export makes one transfer activity per move
(``provenance/w3c.py``).

Where the copy goes (``transfer_target``): under ``<products>/transfers/<activity>/<product>/``
of the worker's storage — its local products folder, or its ``products/`` in the bucket when its
storage is an object store (the boundary then stages it into the work directory as any stored
input).  A folder product moves only between folders.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from skyweave.errors import SkyweaveError
from skyweave.executors.base import ExecutionEnv
from skyweave.model import messages as m
from skyweave.model.sites import site_of
from skyweave.storage import LocalStorage, Storage, locate, open_storage

log = logging.getLogger(__name__)

TRANSFERS = "transfers"
"""The ``Usage.custom`` key of an attempt's moves (a JSON list of objects), and the folder of the
copies in a site's products."""


def transfer_target(env: ExecutionEnv) -> Path | Storage:
    """Where a worker with ``env`` brings inputs from other sites: its site's products."""
    return open_storage(env.storage).within("products") if env.storage else env.storage_root


def bring_inputs(dispatch: m.DispatchActivity, *, site: str, roots: Mapping[str, str],
                 into: Path | Storage) -> tuple[m.DispatchActivity, list[dict[str, Any]]]:
    """``dispatch`` with its inputs held by other sites copied under ``into``'s ``transfers/``,
    and the moves made.  An input that cannot be copied is left where it is (the task reads it
    there, or fails saying it is missing) and logged."""
    target = LocalStorage(into) if isinstance(into, Path) else into
    refs = dict(dispatch.products)
    moves: list[dict[str, Any]] = []
    for pid, ref in dispatch.products.items():
        source_site = site_of(ref.uri, roots)
        if not source_site or source_site == site:
            continue
        started, clock = time.time(), time.perf_counter()
        try:
            uri, size = _copy(ref.uri, target, f"{TRANSFERS}/{dispatch.activity_id}/{pid}")
        except (OSError, SkyweaveError) as exc:
            log.warning("could not bring input %s of %s from site %s: %s", pid, dispatch.activity_id,
                        source_site, getattr(exc, "message", None) or exc)
            continue
        refs[pid] = msgspec.structs.replace(ref, uri=uri)
        moves.append({"product": pid, "from": source_site, "to": site, "bytes": size,
                      "seconds": time.perf_counter() - clock, "started_at": started,
                      "source": ref.uri, "destination": uri})
    if not moves:
        return dispatch, moves
    return msgspec.structs.replace(dispatch, products=refs), moves


def _copy(uri: str, target: Storage, folder: str) -> tuple[str, int]:
    """The object (or local folder) at ``uri`` copied to ``folder/<its name>`` in ``target``: the
    copy's URI (a local path for a local target, as products are recorded) and its bytes."""
    local = "://" not in uri or uri.startswith("file://")
    if local and isinstance(target, LocalStorage):  # folder to folder: a plain copy, folders too
        source = LocalStorage.local_path(uri) if "://" in uri else Path(uri)
        copy = target.path(f"{folder}/{source.name}")
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy, dirs_exist_ok=True)
            return str(copy), sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())
        shutil.copyfile(source, copy)
        return str(copy), copy.stat().st_size
    storage, key = locate(uri)
    if local and LocalStorage.local_path(uri).is_dir():
        raise SkyweaveError(f"{uri} is a folder, and the storage at this site is not",
                            hint="store the product as one file (an archive) to move it between sites")
    dest = f"{folder}/{PurePosixPath(key).name}"
    if isinstance(target, LocalStorage):  # an object store to a folder: one streamed, hashed GET
        stored = storage.get(key, target.path(dest))
        return str(target.path(dest)), stored.size
    with storage.open(key) as reader:  # anything to an object store: streamed, hashed on the way
        stored = target.put(dest, reader)
    return stored.uri, stored.size


def with_moves(outcome: m.ActivityFinished | m.ActivityFailed, moves: list[dict[str, Any]]
               ) -> m.ActivityFinished | m.ActivityFailed:
    """The outcome with its attempt's moves in its usage."""
    usage = msgspec.structs.replace(outcome.usage, custom={
        **outcome.usage.custom, TRANSFERS: json.dumps(moves),
        "transfer_bytes": sum(int(x["bytes"]) for x in moves)})
    return msgspec.structs.replace(outcome, usage=usage)
