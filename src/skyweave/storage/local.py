"""Product storage in a local folder: ``root/<run_id>/<activity_id>/<name>``.

Files are *moved* in (a rename when source and storage share a filesystem, a streamed copy
otherwise) and checksummed as ``sha256:<hex>`` in 1 MiB blocks, so a 100 GB file never sits in
memory.  Products are addressed by ``file://`` URIs; ``local_path`` turns one back into a path.

A process remembers the checksums it computed (``remember_checksum``/``known_checksum``), keyed by
the file's identity (path, inode, size, modification time in ns): a product stored by a worker
process and read as an input by a later activity of the same process is not read again to
validate it, nor is an input read by several activities; any change to the file changes its
identity and makes it hashed again.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlparse

from skyweave.errors import SkyweaveError

BLOCK_SIZE = 1 << 20
"""Checksums and copies read this many bytes at a time."""


_known: dict[tuple[str, int, int, int], str] = {}
KNOWN_MAX = 10_000
"""Entries kept before the memory of checksums is cleared."""


def _identity(path: Path | str, stat: os.stat_result) -> tuple[str, int, int, int]:
    return (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def remember_checksum(path: Path | str, stat: os.stat_result, checksum: str) -> None:
    """Note that this process found ``checksum`` for the file at ``path`` as ``stat`` describes it."""
    if len(_known) >= KNOWN_MAX:
        _known.clear()
    _known[_identity(path, stat)] = checksum


def known_checksum(path: Path | str, stat: os.stat_result) -> str | None:
    """The checksum this process computed for this file, if it has not changed since."""
    return _known.get(_identity(path, stat))


def checksum_unchanged(path: Path) -> tuple[str, os.stat_result]:
    """``checksum_file`` and the file's ``stat``, remembered only if the file did not change while
    it was read."""
    before = path.stat()
    checksum = checksum_file(path)
    after = path.stat()
    if _identity(path, before) == _identity(path, after):
        remember_checksum(path, after, checksum)
    return checksum, after


class StoredFile(NamedTuple):
    uri: str
    checksum: str
    size: int


def file_uri(path: Path | str) -> str:
    """The ``file://`` URI of an absolute (or made absolute) local path."""
    return Path(path).absolute().as_uri()


def checksum_file(path: Path | str) -> str:
    """``sha256:<hex>`` of a file's content, read in ``BLOCK_SIZE`` blocks."""
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return f"sha256:{digest.hexdigest()}"


def copy_and_hash(src: Path, dst: Path) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (through a temporary name) hashing on the way; one pass over the data."""
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    size = 0
    partial = dst.with_name(f".{dst.name}.partial")
    with open(src, "rb", buffering=0) as reader, open(partial, "wb", buffering=0) as writer:
        while n := reader.readinto(buffer):
            digest.update(view[:n])
            writer.write(view[:n])
            size += n
    os.replace(partial, dst)
    return f"sha256:{digest.hexdigest()}", size


class LocalStorage:
    """Products stored under one local folder."""

    scheme = "file"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def location(self, run_id: str, activity_id: str, name: str) -> Path:
        """Where ``store_file`` puts a file called ``name`` (may contain sub-folders)."""
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise SkyweaveError(
                f"product name {name!r} is not a relative file name",
                hint="name products with a plain file name or a relative path inside the work directory",
            )
        return self.root / run_id / activity_id / relative

    def store_file(self, src: Path | str, run_id: str, activity_id: str, name: str = "") -> StoredFile:
        """Move ``src`` into storage as ``<run_id>/<activity_id>/<name>`` (default: its file name).

        Returns the product's URI, checksum and size.  An existing file of that name (left by an
        earlier attempt of the same activity) is replaced.
        """
        source = Path(src)
        if not source.is_file():
            raise SkyweaveError(
                f"cannot store {source}: no such file",
                hint="write the file before returning it as a product",
            )
        target = self.location(run_id, activity_id, name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            checksum, size = copy_and_hash(source, target)
            source.unlink()
            remember_checksum(target, target.stat(), checksum)
            return StoredFile(file_uri(target), checksum, size)
        checksum, stat = checksum_unchanged(target)
        return StoredFile(file_uri(target), checksum, stat.st_size)

    @staticmethod
    def local_path(uri: str) -> Path:
        """The local path of a ``file://`` URI (a bare path is accepted as is)."""
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            if parsed.netloc not in ("", "localhost"):
                raise SkyweaveError(
                    f"product URI {uri!r} names host {parsed.netloc!r}; only local files are readable here",
                    hint="stage the product to this host or use a storage that can read it",
                )
            return Path(unquote(parsed.path) if parsed.scheme else uri)
        raise SkyweaveError(
            f"product URI {uri!r} is not a local file (scheme {parsed.scheme!r})",
            hint="configure a storage for that scheme, or stage the product locally first",
        )
