"""``File`` and ``Folder``: external data named *in place*, whose content is part of the cache key.

A plain ``str`` path is cached on the string: edit ``raw/scan02.fits`` or add ``raw/exp99.txt``,
run again, and everything is reused with stale science.  ``File(path)`` and ``Folder(path)`` are
registered at submission as products *where they are* (no copy: a 100 GB measurement set stays
put) with a fingerprint as their checksum, so the activities that read them are keyed on it:

* ``hash="stat"`` (default): size, modification time (ns) and inode, read with one ``stat`` per
  file, as make and Snakemake do; a file rewritten with the same size within the file system's
  time resolution goes unnoticed.
* ``hash="sha256"``: the content; hashed again only when the ``stat`` fingerprint changed, so a
  re-submission of an untouched 100 GB file costs one ``stat``, and ``touch`` alone re-runs nothing.

A folder's fingerprint covers its listing: the relative name and fingerprint of every file that
``glob`` matches (``"*"``: the files directly in it; ``"**/*.fits"``: recursively).  A task
receives a ``File``/``Folder`` back (path-like: ``open(f)``, ``Path(f)``), and may return
``File``s, e.g. ``folder.files()``: they are registered in place too, so each downstream activity
is keyed on its own file and only those of changed files run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from skyweave.errors import DefinitionError
from skyweave.model.product import Product


class UntrackedPathWarning(UserWarning):
    """A plain string parameter names an existing file or folder: its content is not tracked."""


IN_PLACE = "in_place"
"""Attribute of a product named in place: ``{"kind", "hash", "glob", "stat"}``."""
HASHES = ("stat", "sha256")


def _check_hash(what: str, hash_: str) -> None:
    if hash_ not in HASHES:
        raise DefinitionError(f"{what}: hash={hash_!r} is not one of {', '.join(map(repr, HASHES))}",
                              hint='use hash="stat" (size, mtime, inode; the default) or hash="sha256"')


@dataclass
class File(Product):
    """A file of external data, named where it is: ``File("raw/scan02.fits", type="raw.fits")``,
    or an object in a storage the registry knows: ``File("s3://bucket/obs/scan02.fits")``
    (fingerprinted through the Storage port: size and modification time, or its sha256 with
    ``hash="sha256"``; credentials from the storage's usual places, never in the URL)."""

    hash: str = field(default="stat", kw_only=True)

    def __post_init__(self) -> None:
        text = str(self.path)
        if is_url(text):  # kept as given: a Path would fold the "//" of "s3://bucket/key"
            self.uri = self.uri or text
        super().__post_init__()
        _check_hash(f"File({text!r})", self.hash)
        self.name = self.name or (PurePosixPath(urlparse(text).path).name if is_url(text)
                                  else Path(text).name)

    def spec(self) -> dict[str, Any]:
        """What the graph records until submission registers it (an absolute path, or the URL)."""
        return _spec(self, "file", None)


@dataclass
class Folder(Product):
    """A folder of external data: ``Folder("raw", glob="*.txt")``; its key covers its listing."""

    type: str = "folder"
    glob: str = field(default="*", kw_only=True)
    hash: str = field(default="stat", kw_only=True)

    def __post_init__(self) -> None:
        if is_url(str(self.path)):
            raise DefinitionError(f"Folder({str(self.path)!r}): a folder of object storage is not supported",
                                  hint="name each object with File('s3://bucket/key'), or copy the folder "
                                       "to a local disk")
        super().__post_init__()
        _check_hash(f"Folder({str(self.path)!r})", self.hash)
        self.name = self.name or Path(self.path).name

    def files(self) -> list[File]:
        """The files the folder's ``glob`` matches, sorted by name, each a ``File`` (same hash)."""
        return [File(p, hash=self.hash) for p in listing(Path(self.path), self.glob)]

    def spec(self) -> dict[str, Any]:
        return _spec(self, "folder", self.glob)


def listing(folder: Path, glob: str) -> list[Path]:
    """The regular files under ``folder`` that ``glob`` matches, sorted (the fingerprint's order)."""
    return sorted(p for p in folder.glob(glob) if p.is_file())


def is_url(text: str) -> bool:
    """Whether a ``File`` names an object by URL (``s3://…``) rather than a local path."""
    scheme = urlparse(text).scheme
    return len(scheme) > 1 and scheme != "file" and "://" in text


def _spec(item: File | Folder, kind: str, glob: str | None) -> dict[str, Any]:
    where = item.uri if kind == "file" and item.uri and is_url(item.uri) else str(Path(item.path).absolute())
    return {"kind": kind, "path": where, "hash": item.hash, "glob": glob,
            "type": item.type, "obs_id": item.obs_id, "detector": item.detector,
            "version": item.version, "attributes": dict(item.attributes)}


def from_product(product: Product) -> Product:
    """The ``File``/``Folder`` a product named in place stands for (others unchanged)."""
    info = product.attributes.get(IN_PLACE)
    if not isinstance(info, dict):
        return product
    common: dict[str, Any] = {
        "type": product.type, "obs_id": product.obs_id, "detector": product.detector,
        "version": product.version, "attributes": product.attributes, "name": product.name,
        "id": product.id, "uri": product.uri, "checksum": product.checksum, "size": product.size,
        "hash": info.get("hash", "stat")}
    if info.get("kind") == "folder":
        return Folder(product.path, glob=info.get("glob") or "*", **common)
    return File(product.path, **common)
