"""Product storage: where products' files live, how they are checksummed and addressed by URI.

``open_storage`` picks the implementation of the ``Storage`` port (``storage/base.py``) from a URL
or a path, through the ``BACKENDS`` registry keyed by URL scheme, as ``open_store`` and
``open_bus`` do:

* a plain path, or ``file:///abs/path`` — a local folder (``LocalStorage``);
* ``memory://name/`` — a process-wide storage in memory (``MemoryStorage``, for tests: a storage
  that is not the local disk);
* ``s3://bucket/prefix`` — S3-compatible object storage (``S3Storage``, needs ``skyweave[s3]``);
* another scheme — whatever a backend registered with ``register_backend``.

A deployment's storage holds ``products/``, ``logs/`` and ``code/`` (``Storage.within`` gives
each part as a storage of its own).

``locate(uri)`` gives the storage that can read a product's URI and the product's key in it, so
code that checks or deletes products (the cache integrity check, reprocess, cleanup) works for
every scheme the registry knows, not only ``file://``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from skyweave.errors import SkyweaveError
from skyweave.storage.base import (
    BLOCK_SIZE,
    ObjectMissingError,
    ObjectStat,
    Storage,
    StoredFile,
    UnsafeKeyError,
    check_key,
    product_key,
)
from skyweave.storage.local import LocalStorage, checksum_file, file_uri
from skyweave.storage.memory import MemoryStorage, open_memory
from skyweave.storage.s3 import open_s3

__all__ = ["BACKENDS", "BLOCK_SIZE", "LocalStorage", "MemoryStorage", "ObjectMissingError", "ObjectStat",
           "Storage", "StoredFile", "UnsafeKeyError", "check_key", "checksum_file", "describe", "file_uri",
           "locate", "open_storage", "product_key", "register_backend", "verify"]

StorageOpener = Callable[[str], Storage]
"""Opens the storage rooted at a URL of its scheme (``scheme://host/`` for the whole host)."""

BACKENDS: dict[str, StorageOpener] = {}
"""URL scheme -> opener; filled by ``register_backend``."""


def register_backend(scheme: str, opener: StorageOpener) -> None:
    """Make ``open_storage`` open ``scheme://…`` URLs with ``opener`` (a later registration wins)."""
    BACKENDS[scheme.lower()] = opener


def _open_file(url: str) -> Storage:
    return LocalStorage(LocalStorage.local_path(url) if url.partition("://")[2] else Path("/"))


register_backend("file", _open_file)
register_backend("memory", open_memory)
register_backend("s3", open_s3)  # s3fs is imported when an s3:// storage is opened


def _opener(url: str) -> StorageOpener:
    scheme = urlparse(url).scheme.lower()
    opener = BACKENDS.get(scheme)
    if opener is None:
        raise SkyweaveError(
            f"unknown storage URL scheme {scheme!r} in {url!r}",
            hint="use a directory or file:///abs/path; known schemes: " + ", ".join(sorted(BACKENDS)))
    return opener


def open_storage(url_or_path: str | Path) -> Storage:
    """The storage rooted at ``url_or_path`` (a directory, or a URL of a registered scheme)."""
    text = str(url_or_path)
    if "://" not in text:
        return LocalStorage(Path(text).expanduser())
    return _opener(text)(text)


def locate(uri: str) -> tuple[Storage, str]:
    """The storage that holds the object at ``uri`` and its key there (a bare path is a local file)."""
    if "://" not in uri:
        uri = file_uri(uri)
    parsed = urlparse(uri)
    storage = _opener(uri)(f"{parsed.scheme}://{parsed.netloc}/")
    return storage, storage.key(uri)


def describe(uri: str) -> str:
    """A URI as people read it: a local file's path, any other URI as it is."""
    try:
        return str(LocalStorage.local_path(uri))
    except SkyweaveError:
        return uri


def verify(uri: str, checksum: str | None) -> str:
    """``""`` when the object at ``uri`` exists and (if ``checksum`` is given) has that checksum;
    else what is wrong, in a few words (``"gone"``, ``"changed"``, or why it cannot be read)."""
    try:
        storage, key = locate(uri)
        if not checksum:
            return "" if storage.exists(key) else "gone"
        return "" if storage.checksum(key) == checksum else "changed"
    except ObjectMissingError:
        return "gone"
    except (SkyweaveError, OSError) as exc:
        return f"unreadable ({getattr(exc, 'message', None) or exc})"
