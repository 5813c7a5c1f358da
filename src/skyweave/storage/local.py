"""The Storage port on a local folder (``file://`` URIs): ``root/<run_id>/<activity_id>/<name>``.

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
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from skyweave.errors import SkyweaveError
from skyweave.storage.base import (
    BLOCK_SIZE,
    ObjectMissingError,
    ObjectStat,
    Storage,
    StoredFile,
    UnsafeKeyError,
    check_key,
    copy_hashing,
    product_key,
)

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


class LocalStorage(Storage):
    """Objects stored as files under one local folder; keys are paths relative to it.

    A key never reaches outside the folder: besides ``check_key``'s rules, a path whose folders
    or file resolve (through symlinks) outside the root is refused.
    """

    scheme = "file"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    # -- keys and paths ------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        """The file that holds ``key``, after checking that it stays inside the root."""
        check_key(key)
        path = self.root / key
        root = self.root.resolve()
        try:
            inside = path.resolve().is_relative_to(root) and path.parent.resolve().is_relative_to(root)
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            raise UnsafeKeyError(f"storage key {key!r} leads outside {self.root} (through a symlink)",
                                 hint="remove the symlink, or store the file under another name")
        return path

    def location(self, run_id: str, activity_id: str, name: str) -> Path:
        """Where ``store_file`` puts a file called ``name`` (may contain sub-folders)."""
        try:
            return self.path(product_key(run_id, activity_id, name))
        except UnsafeKeyError as exc:
            raise SkyweaveError(
                f"product name {name!r} is not a relative file name",
                hint="name products with a plain file name or a relative path inside the work directory",
            ) from exc

    def uri(self, key: str) -> str:
        return file_uri(self.root / check_key(key))

    def key(self, uri: str) -> str:
        """Also refused: a URI whose folders lead out of the root through a symlink."""
        path = Path(os.path.abspath(self.local_path(uri)))
        if not path.is_relative_to(self.root) or path == self.root:
            raise UnsafeKeyError(f"{uri!r} is not inside the storage at {self.root}",
                                 hint="give a URI of a file under the storage folder")
        key = path.relative_to(self.root).as_posix()
        self.path(key)
        return key

    def within(self, folder: str) -> Storage:
        return LocalStorage(self.path(folder.strip("/")))

    def _existing(self, key: str) -> Path:
        path = self.path(key)
        if path.is_dir():
            raise SkyweaveError(f"{path} is a folder, not a stored object",
                                hint="a storage key names one file")
        if not path.is_file():
            raise ObjectMissingError(f"no object at {self.uri(key)}: the file does not exist",
                                     hint="check the product's URI; it may have been deleted or moved",
                                     uri=self.uri(key))
        return path

    # -- writing -------------------------------------------------------------------------------------
    def put(self, key: str, source: BinaryIO) -> StoredFile:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as writer:
                hashing = copy_hashing(source, writer)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        remember_checksum(target, target.stat(), hashing.checksum)
        return StoredFile(file_uri(target), hashing.checksum, hashing.size)

    def put_file(self, path: Path | str, key: str, *, move: bool = False) -> StoredFile:
        """A rename when moving within one filesystem (checksummed by reading it once), a streamed
        copy checksummed on the way otherwise."""
        source = Path(path)
        if not source.is_file():
            raise ObjectMissingError(f"cannot store {source}: no such file",
                                     hint="write the file before storing it")
        target = self.path(key)
        if move:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
            else:
                checksum, stat = checksum_unchanged(target)
                return StoredFile(file_uri(target), checksum, stat.st_size)
        return super().put_file(source, key, move=move)  # the streamed copy

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
        self.location(run_id, activity_id, name or source.name)  # the product-name error first
        return self.put_file(source, product_key(run_id, activity_id, name or source.name), move=True)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._existing(key))
        except FileNotFoundError:
            raise ObjectMissingError(f"no object at {self.uri(key)} to delete", uri=self.uri(key)) from None

    # -- reading -------------------------------------------------------------------------------------
    def get(self, key: str, dest: Path | str) -> StoredFile:
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with self.open(key) as reader, open(partial, "wb") as writer:
                hashing = copy_hashing(reader, writer)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return StoredFile(self.uri(key), hashing.checksum, hashing.size)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._existing(key), "rb")
        except FileNotFoundError:
            raise ObjectMissingError(f"no object at {self.uri(key)}", uri=self.uri(key)) from None

    def stat(self, key: str) -> ObjectStat:
        try:
            st = self._existing(key).stat()
        except FileNotFoundError:
            raise ObjectMissingError(f"no object at {self.uri(key)}", uri=self.uri(key)) from None
        return ObjectStat(st.st_size, st.st_mtime)

    def checksum(self, key: str) -> str:
        """Always read (an integrity check must not trust memory); remembered for the boundary's
        input validation (see the module docstring)."""
        return checksum_unchanged(self._existing(key))[0]

    def list(self, prefix: str = "") -> Iterator[str]:
        folder = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not folder.is_dir():
            return
        root = self.root.resolve()
        found = []
        for dirpath, _dirs, files in os.walk(folder):  # symlinked folders are not followed
            for name in files:
                path = Path(dirpath) / name
                if name.startswith(".") and name.endswith(".partial"):
                    continue
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    continue  # a link out of the storage is not one of its objects
                found.append(path.relative_to(self.root).as_posix())
        yield from sorted(found)

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
