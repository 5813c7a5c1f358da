"""A product of a remote server: its record, and its bytes opened or downloaded.

``open()`` reads it through fsspec: from the server (``remote/fs.py``, range requests), or with
``direct=True`` from the object store its URI names.  ``download(path)`` saves it, streamed and
checksum verified.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec

from skyweave.errors import SkyweaveError
from skyweave.model.records import ProductRecord
from skyweave.remote.fs import SkyweaveFileSystem
from skyweave.remote.http import raise_for

if TYPE_CHECKING:
    from skyweave.remote.client import RemoteClient


class ChecksumError(SkyweaveError):
    """The bytes received are not the ones the server recorded."""


class RemoteProduct:
    def __init__(self, client: RemoteClient, record: ProductRecord) -> None:
        self.client = client
        self.record = record

    def __getattr__(self, name: str) -> Any:  # id, uri, type, name, obs_id, size, checksum...
        return getattr(self.record, name)

    def __repr__(self) -> str:
        return f"<product {self.record.id} {self.record.type} {self.record.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteProduct) and other.record == self.record

    def __hash__(self) -> int:
        return hash(self.record.id)

    def open(self, mode: str = "rb", *, direct: bool = False) -> IO[Any]:
        """The product's bytes (``rb``) or text (``r``) as a file object, read through fsspec: from
        the server in blocks (``remote/fs.py``: a reader that seeks fetches only what it reads), or
        ``direct`` from the object store its URI names (``s3://``...; this machine then needs the
        store's fsspec implementation and credentials)."""
        if mode not in ("rb", "r"):
            raise ValueError(f"products are read-only; open them with 'rb' or 'r', not {mode!r}")
        if direct:
            opened: IO[Any] = fsspec.open(self.record.uri, mode).open()
            return opened
        binary: IO[bytes] = SkyweaveFileSystem(http=self.client.http, skip_instance_cache=True).open(
            self.record.id, "rb", size=self.record.size)
        return io.TextIOWrapper(binary, encoding="utf-8") if mode == "r" else binary

    def download(self, path: str | Path) -> Path:
        """Save the product at ``path`` (a directory: under the product's name); checksum verified."""
        target = Path(path)
        if target.is_dir():
            target = target / (self.record.name or self.record.id)
        partial = target.with_name(f".{target.name}.part")
        try:
            with partial.open("wb") as out:
                self._fetch_into(out)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def _fetch_into(self, out: IO[bytes]) -> None:
        digest = hashlib.sha256()
        with self.client.http.stream("GET", f"/api/v1/products/{self.record.id}/content") as response:
            if not response.is_success:
                response.read()
                raise_for(response)
            for block in response.iter_bytes(1 << 20):
                digest.update(block)
                out.write(block)
        expected = self.record.checksum
        if expected and expected.startswith("sha256:") and expected != f"sha256:{digest.hexdigest()}":
            raise ChecksumError(f"product {self.record.id} arrived with other bytes than recorded "
                                f"({expected})", hint="download it again; if it persists, the stored "
                                                      "file changed: tell the server's operator")
