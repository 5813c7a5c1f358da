"""The Storage port in process memory: ``memory://name/`` (a process-wide storage per name).

For tests: it is a storage that is *not* a local filesystem, so code that must work with any
scheme (the cache integrity check, cleanup, workers without the controller's disk) can be
exercised without a server.  Objects are held whole in memory; reads and writes still go block
by block through the same streaming checksums as every other implementation.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlparse

from skyweave.storage.base import (
    BLOCK_SIZE,
    Hashing,
    ObjectMissingError,
    ObjectStat,
    Storage,
    StoredFile,
    UnsafeKeyError,
    check_key,
)

_named: dict[str, MemoryStorage] = {}
_lock = threading.Lock()


class MemoryStorage(Storage):
    scheme = "memory"

    def __init__(self, name: str) -> None:
        self.name = name
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStorage:
        with _lock:
            found = _named.get(name)
            if found is None:
                found = _named[name] = cls(name)
            return found

    def uri(self, key: str) -> str:
        return f"memory://{self.name}/{quote(check_key(key))}"

    def key(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "memory" or parsed.netloc != self.name:
            raise UnsafeKeyError(f"{uri!r} is not in memory://{self.name}/",
                                 hint="give a URI of this storage")
        return check_key(unquote(parsed.path).removeprefix("/"))

    def put(self, key: str, source: BinaryIO) -> StoredFile:
        check_key(key)
        hashing = Hashing()
        blocks = []
        while block := source.read(BLOCK_SIZE):
            hashing.update(block)
            blocks.append(block)
        with self._lock:
            self._objects[key] = (b"".join(blocks), time.time())
        return StoredFile(self.uri(key), hashing.checksum, hashing.size)

    def _data(self, key: str) -> tuple[bytes, float]:
        check_key(key)
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise ObjectMissingError(f"no object at {self.uri(key)}", uri=self.uri(key),
                                     hint="check the product's URI; it may have been deleted")
        return found

    def get(self, key: str, dest: Path | str) -> StoredFile:
        data, _ = self._data(key)
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        hashing = Hashing()
        with open(target, "wb") as writer:
            for start in range(0, len(data), BLOCK_SIZE):
                block = data[start:start + BLOCK_SIZE]
                hashing.update(block)
                writer.write(block)
        return StoredFile(self.uri(key), hashing.checksum, hashing.size)

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self._data(key)[0])

    def stat(self, key: str) -> ObjectStat:
        data, modified = self._data(key)
        return ObjectStat(len(data), modified)

    def delete(self, key: str) -> None:
        self._data(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        folder = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(folder))
        yield from keys


def open_memory(url: str) -> Storage:
    return MemoryStorage.named(urlparse(url).netloc)
