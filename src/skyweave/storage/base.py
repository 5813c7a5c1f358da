"""The Storage port: where products' files, logs and code snapshots live, addressed by URI.

A ``Storage`` holds *objects* under *keys*: relative POSIX paths such as
``<run_id>/<activity_id>/<name>``.  Every implementation (the local filesystem today, S3 next)
offers the same operations, and the contract suite (``tests/unit/storage/test_contract.py``) runs
on each:

* ``put`` (from a binary stream) and ``put_file`` (from a local file, optionally moving it) store
  an object and return its ``StoredFile`` (URI, ``sha256:<hex>`` checksum, size), the checksum
  computed *while the bytes stream through*, never by reading the object back nor by holding it
  in memory;
* ``get`` copies an object to a local file, checksumming on the way; ``open`` reads it as a
  stream; ``stat`` gives its size; ``checksum`` hashes it in ``BLOCK_SIZE`` blocks;
* ``delete`` removes it; ``list`` yields the keys under a prefix;
* ``uri``/``key`` convert between a key and the object's URI.

A missing object raises ``ObjectMissingError`` (a ``NotFoundError``) naming the URI.  A key can
never name anything outside the storage: ``check_key`` refuses absolute keys, ``..``, empty
parts, NUL and backslashes, and each implementation refuses keys that escape through its own
means (symlinks on a filesystem).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from skyweave.errors import NotFoundError, SkyweaveError

BLOCK_SIZE = 1 << 20
"""Checksums and copies read this many bytes at a time."""


class StoredFile(NamedTuple):
    uri: str
    checksum: str
    size: int


class ObjectStat(NamedTuple):
    size: int
    modified: float
    """Seconds since the epoch."""
    tag: str = ""
    """What the storage says changes with the content, if anything (S3's ETag)."""


class ObjectMissingError(NotFoundError):
    """The storage holds no object at that key/URI."""


class UnsafeKeyError(SkyweaveError):
    """A key that would name something outside the storage."""


def check_key(key: str) -> str:
    """``key`` if it is a safe relative POSIX path inside a storage, else ``UnsafeKeyError``."""
    parts = key.split("/")
    if (not key or key.startswith("/") or "\x00" in key or "\\" in key
            or any(p in ("", ".", "..") for p in parts) or (len(parts[0]) > 1 and parts[0][1] == ":")):
        raise UnsafeKeyError(
            f"storage key {key!r} is not a relative path inside the storage",
            hint="name products with a plain file name or a relative path (no '..', no leading '/', "
                 "no NUL or backslash)")
    return key


def product_key(run_id: str, activity_id: str, name: str) -> str:
    """The key of a product file called ``name`` (may hold sub-folders) made by an activity."""
    check_key(name)
    return check_key(f"{run_id}/{activity_id}/{name}")


class Hashing:
    """Counts and hashes bytes as they pass (one pass over the data, one block in memory)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def update(self, block: bytes | memoryview) -> None:
        self.digest.update(block)
        self.size += len(block)

    @property
    def checksum(self) -> str:
        return f"sha256:{self.digest.hexdigest()}"


def copy_hashing(reader: BinaryIO, writer: BinaryIO) -> Hashing:
    """Copy ``reader`` to ``writer`` in ``BLOCK_SIZE`` blocks, hashing on the way."""
    hashing = Hashing()
    while block := reader.read(BLOCK_SIZE):
        hashing.update(block)
        writer.write(block)
    return hashing


def checksum_stream(reader: BinaryIO) -> tuple[str, int]:
    """``sha256:<hex>`` and size of what ``reader`` yields, read in ``BLOCK_SIZE`` blocks."""
    hashing = Hashing()
    while block := reader.read(BLOCK_SIZE):
        hashing.update(block)
    return hashing.checksum, hashing.size


class Storage(ABC):
    """Objects under keys, addressed by URI (see the module docstring)."""

    scheme: str

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI of the object at ``key`` (whether or not it exists)."""

    @abstractmethod
    def key(self, uri: str) -> str:
        """The key of ``uri`` in this storage; ``UnsafeKeyError`` if the URI is not inside it."""

    @abstractmethod
    def put(self, key: str, source: BinaryIO) -> StoredFile:
        """Store what ``source`` yields at ``key`` (replacing any object there), checksummed while
        streaming; a reader never sees a partly written object."""

    def put_file(self, path: Path | str, key: str, *, move: bool = False) -> StoredFile:
        """Store the local file ``path`` at ``key``; ``move`` removes the local file once stored."""
        source = Path(path)
        if not source.is_file():
            raise ObjectMissingError(f"cannot store {source}: no such file",
                                     hint="write the file before storing it")
        with open(source, "rb") as reader:
            stored = self.put(key, reader)
        if move:
            source.unlink()
        return stored

    def store_file(self, src: Path | str, run_id: str, activity_id: str, name: str = "") -> StoredFile:
        """Move ``src`` into storage as ``<run_id>/<activity_id>/<name>`` (default: its file name)."""
        source = Path(src)
        key = product_key(run_id, activity_id, name or source.name)
        if not source.is_file():
            raise SkyweaveError(f"cannot store {source}: no such file",
                                hint="write the file before returning it as a product")
        return self.put_file(source, key, move=True)

    @abstractmethod
    def get(self, key: str, dest: Path | str) -> StoredFile:
        """Copy the object to the local file ``dest`` (through a temporary name), checksummed on
        the way."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """The object as a binary stream to read (close it, or use ``with``)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectStat:
        """The object's size and modification time."""

    def checksum(self, key: str) -> str:
        """``sha256:<hex>`` of the object's content, streamed."""
        with self.open(key) as reader:
            return checksum_stream(reader)[0]

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectMissingError:
            return False
        return True

    def within(self, folder: str) -> Storage:
        """The part of this storage under ``folder`` as a storage of its own (keys relative to
        it, the same URIs): ``products/``, ``logs/`` and ``code/`` of a deployment's storage."""
        return Within(self, check_key(folder.strip("/")))

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; ``ObjectMissingError`` if there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """The keys of the objects under ``prefix`` (a folder-like key, or ``""`` for all), sorted."""


class Within(Storage):
    """``Storage.within`` for any implementation: every key prefixed with ``folder/``."""

    def __init__(self, outer: Storage, folder: str) -> None:
        self.outer = outer
        self.folder = folder
        self.scheme = outer.scheme

    def _k(self, key: str) -> str:
        return f"{self.folder}/{check_key(key)}"

    def uri(self, key: str) -> str:
        return self.outer.uri(self._k(key))

    def key(self, uri: str) -> str:
        outer = self.outer.key(uri)
        if not outer.startswith(self.folder + "/"):
            raise UnsafeKeyError(f"{uri!r} is not inside {self.outer.uri(self.folder)}/",
                                 hint="give a URI of an object under that folder")
        return outer[len(self.folder) + 1:]

    def put(self, key: str, source: BinaryIO) -> StoredFile:
        return self.outer.put(self._k(key), source)

    def get(self, key: str, dest: Path | str) -> StoredFile:
        return self.outer.get(self._k(key), dest)

    def open(self, key: str) -> BinaryIO:
        return self.outer.open(self._k(key))

    def stat(self, key: str) -> ObjectStat:
        return self.outer.stat(self._k(key))

    def checksum(self, key: str) -> str:
        return self.outer.checksum(self._k(key))

    def delete(self, key: str) -> None:
        self.outer.delete(self._k(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        inner = f"{self.folder}/{prefix.strip('/')}" if prefix.strip("/") else self.folder
        for key in self.outer.list(inner):
            yield key[len(self.folder) + 1:]
