"""Products named in place (``File``/``Folder``): fingerprints, records and the check that they
did not change.  Nothing here copies, moves or deletes the user's data.

* checksum, ``hash="stat"``: ``stat:<size>:<mtime_ns>:<inode>`` for a file, ``listing:<sha256>``
  over ``name<TAB>stat`` lines for a folder;
* checksum, ``hash="sha256"``: ``sha256:<hex>`` of a file's content, ``listing-sha256:<sha256>``
  over ``name<TAB>sha256`` lines for a folder;
* the product id is derived from the location and the ``stat`` fingerprint, so the same untouched
  file is one product however many runs use it, and its content hash is looked up, not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from skyweave.authoring.external import IN_PLACE, is_url, listing
from skyweave.errors import NotFoundError
from skyweave.model.ids import PRODUCT
from skyweave.model.records import ProductRecord
from skyweave.storage import locate
from skyweave.storage.base import ObjectMissingError
from skyweave.storage.local import LocalStorage, checksum_file, file_uri

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True)
class Fingerprint:
    stat: str
    """The cheap fingerprint (one ``stat`` per file), whatever the hash mode."""
    checksum: str
    """What the cache key uses: ``stat`` itself, or the content hash."""
    size: int


def _stat_text(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def fingerprint(kind: str, path: Path, hash_: str, glob: str | None, *,
                known: Callable[[str], str | None] = lambda _stat: None) -> Fingerprint:
    """Fingerprint a file or folder; ``known(stat)`` may return a content checksum already computed
    for that exact ``stat`` fingerprint (then nothing is read again)."""
    if kind == "folder":
        if not path.is_dir():
            raise NotFoundError(f"no folder {str(path)!r}", hint="give the path of an existing folder",
                                kind="folder", id=str(path))
        files = listing(path, glob or "*")
        stats = [(f.relative_to(path).as_posix(), f.stat()) for f in files]
        stat = "listing:" + _digest([f"{name}\t{_stat_text(st)}" for name, st in stats])
        size = sum(st.st_size for _, st in stats)
        if hash_ == "stat":
            return Fingerprint(stat, stat, size)
        checksum = known(stat) or "listing-sha256:" + _digest(
            [f"{name}\t{checksum_file(f)}" for (name, _), f in zip(stats, files, strict=True)])
        return Fingerprint(stat, checksum, size)
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not path.is_file():
        raise NotFoundError(f"no file {str(path)!r}", hint="give the path of an existing file",
                            kind="file", id=str(path))
    stat = "stat:" + _stat_text(st)
    if hash_ == "stat":
        return Fingerprint(stat, stat, st.st_size)
    return Fingerprint(stat, known(stat) or checksum_file(path), st.st_size)


def product_id(uri: str, kind: str, hash_: str, glob: str | None, stat: str, *, meta: str = "") -> str:
    """A product id that names this file or folder in this state, with this metadata (``prd-`` +
    20 characters)."""
    text = f"{uri}|{kind}|{hash_}|{glob}|{stat}|{meta}"
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:13])
    chars = []
    for _ in range(20):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{PRODUCT}-{''.join(chars)}"


def object_fingerprint(uri: str, hash_: str, *, known: Callable[[str], str | None] = lambda _stat: None
                       ) -> tuple[str, Fingerprint, str]:
    """``(uri, fingerprint, name)`` of an object named by URL (``s3://bucket/key``), through the
    Storage port: ``object:<size>:<modified>:<ETag>`` from one ``stat``, the sha256 streamed once when
    ``hash="sha256"`` and ``known`` does not have it.  ``ObjectMissingError`` if there is none."""
    storage, key = locate(uri)
    st = storage.stat(key)
    stat = f"object:{st.size}:{st.modified!r}:{st.tag}"  # S3's ETag: a rewrite within its 1 s mtime too
    checksum = stat if hash_ == "stat" else (known(stat) or storage.checksum(key))
    return storage.uri(key), Fingerprint(stat, checksum, st.size), PurePosixPath(key).name


def record(spec: dict[str, Any], *, lookup: Callable[[str], ProductRecord | None] = lambda _id: None
           ) -> ProductRecord:
    """The product record of a ``File``/``Folder`` spec (``File.spec()``), fingerprinted now.
    ``lookup(id)`` finds an earlier record of the same state, whose content hash is reused."""
    kind, path, hash_, glob = spec["kind"], Path(spec["path"]), spec.get("hash", "stat"), spec.get("glob")
    if is_url(str(spec["path"])):
        return _object_record(spec, hash_, lookup)
    uri = file_uri(path)
    meta = json.dumps([spec.get(k) for k in ("type", "obs_id", "detector", "version", "attributes")],
                      sort_keys=True, default=str)
    found: dict[str, ProductRecord | None] = {}

    def known(stat: str) -> str | None:
        earlier = lookup(product_id(uri, kind, hash_, glob, stat, meta=meta))
        found["earlier"] = earlier
        return earlier.checksum if earlier is not None else None

    fp = fingerprint(kind, path, hash_, glob, known=known)
    pid = product_id(uri, kind, hash_, glob, fp.stat, meta=meta)
    earlier = found.get("earlier") or lookup(pid)
    if earlier is not None:
        return earlier
    attributes = {**dict(spec.get("attributes") or {}),
                  IN_PLACE: {"kind": kind, "hash": hash_, "glob": glob, "stat": fp.stat}}
    return ProductRecord(id=pid, uri=uri, type=spec.get("type") or kind, name=path.name,
                         obs_id=spec.get("obs_id"), detector=spec.get("detector"),
                         version=spec.get("version"), checksum=fp.checksum, size=fp.size,
                         created_at=time.time(), attributes=attributes)


def _object_record(spec: dict[str, Any], hash_: str,
                   lookup: Callable[[str], ProductRecord | None]) -> ProductRecord:
    meta = json.dumps([spec.get(k) for k in ("type", "obs_id", "detector", "version", "attributes")],
                      sort_keys=True, default=str)
    found: dict[str, ProductRecord | None] = {}

    def known(stat: str) -> str | None:
        earlier = lookup(product_id(str(spec["path"]), "file", hash_, None, stat, meta=meta))
        found["earlier"] = earlier
        return earlier.checksum if earlier is not None else None

    try:
        uri, fp, name = object_fingerprint(str(spec["path"]), hash_, known=known)
    except ObjectMissingError:
        raise NotFoundError(f"no object at {spec['path']}", hint="upload it first, or give the URL of an "
                            "existing object", kind="file", id=str(spec["path"])) from None
    pid = product_id(str(spec["path"]), "file", hash_, None, fp.stat, meta=meta)
    earlier = found.get("earlier") or lookup(pid)
    if earlier is not None:
        return earlier
    attributes = {**dict(spec.get("attributes") or {}),
                  IN_PLACE: {"kind": "file", "hash": hash_, "glob": None, "stat": fp.stat}}
    return ProductRecord(id=pid, uri=uri, type=spec.get("type") or "file", name=name,
                         obs_id=spec.get("obs_id"), detector=spec.get("detector"),
                         version=spec.get("version"), checksum=fp.checksum, size=fp.size,
                         created_at=time.time(), attributes=attributes)


def is_in_place(attributes: dict[str, Any]) -> bool:
    return isinstance(attributes.get(IN_PLACE), dict)


def change(uri: str, checksum: str | None, attributes: dict[str, Any]) -> str:
    """Why a product named in place no longer is what was registered ("" if it still is)."""
    info = attributes[IN_PLACE]
    kind, hash_, glob = info.get("kind", "file"), info.get("hash", "stat"), info.get("glob")
    if is_url(uri):
        try:
            _uri, now_fp, _name = object_fingerprint(
                uri, hash_, known=lambda stat: checksum if stat == info.get("stat") else None)
        except ObjectMissingError:
            return f"object {uri} is gone"
        if now_fp.checksum == checksum:
            return ""
        return f"object {uri} changed since it was registered (was {checksum}, now {now_fp.checksum})"
    path = LocalStorage.local_path(uri)
    what = f"folder {path}" + (f" (files {glob})" if glob and glob != "*" else "") if kind == "folder" \
        else f"file {path}"
    try:
        now = fingerprint(kind, path, hash_, glob,
                          known=lambda stat: checksum if stat == info.get("stat") else None)
    except NotFoundError:
        return f"{what} is gone"
    if now.checksum == checksum:
        return ""
    if kind == "folder":
        return f"{what} changed since it was registered: files were added, removed or modified"
    return f"{what} changed since it was registered (was {checksum}, now {now.checksum})"


def resolve_graph(graph: dict[str, Any], *, lookup: Callable[[str], ProductRecord | None] = lambda _id: None
                  ) -> tuple[dict[str, Any], list[ProductRecord]]:
    """The graph with every ``{"in_place": spec}`` argument replaced by ``{"product": id}``, and the
    records of those products (fingerprinted now; registered by the caller)."""
    records: dict[str, ProductRecord] = {}

    def walk(arg: Any) -> Any:
        if not isinstance(arg, dict):
            return arg
        if "in_place" in arg:
            rec = record(arg["in_place"], lookup=lookup)
            records[rec.id] = rec
            return {"product": rec.id}
        if "list" in arg:
            return {**arg, "list": [walk(a) for a in arg["list"]]}
        if "dict" in arg:
            return {**arg, "dict": {k: walk(a) for k, a in arg["dict"].items()}}
        return arg

    nodes = {node_id: {**node, "args": {p: walk(a) for p, a in node.get("args", {}).items()}}
             for node_id, node in graph.get("nodes", {}).items()}
    return {**graph, "nodes": nodes}, list(records.values())
