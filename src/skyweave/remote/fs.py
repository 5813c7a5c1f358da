"""Products of a server as an fsspec filesystem (protocol ``skyweave``): what ``RemoteProduct.open``
reads through, and what any fsspec-aware library (astropy, xarray, pandas) can be handed::

    fs = SkyweaveFileSystem(url="http://host:8765", token="sw_...")
    with fs.open("prd-01...") as fh:          # or fsspec.open("skyweave://prd-01...", url=..., token=...)
        header = fh.read(2880)

Reads are HTTP range requests on ``/api/v1/products/{id}/content``, in blocks, so a reader that
seeks (a FITS header, one HDF5 dataset) fetches only what it reads.
"""

from __future__ import annotations

from typing import Any

import fsspec
import httpx2 as httpx
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from skyweave.errors import ParameterError
from skyweave.remote.http import raise_for


class SkyweaveFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec is untyped
    protocol = "skyweave"

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 http: httpx.Client | None = None, **kwargs: Any) -> None:
        """``url`` and ``token`` of a server, or the ``http`` client of a ``RemoteClient``."""
        super().__init__(**kwargs)
        if http is None:
            if not url or not token:
                raise ParameterError("the skyweave filesystem needs the server's url and a token",
                                     hint='fsspec.open("skyweave://prd-…", url="http://host:8765", '
                                          'token="sw_…")')
            http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"})
        self.http = http

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(path).removeprefix("skyweave://").strip("/")

    def info(self, path: str, **_kwargs: Any) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/products/{self._strip_protocol(path)}")
        raise_for(response)
        record = response.json()["product"]
        return {"name": record["id"], "size": record["size"], "type": "file", "checksum": record["checksum"],
                "product_name": record["name"], "uri": record["uri"]}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        info = self.info(path, **kwargs)
        return [info] if detail else [info["name"]]

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> ProductFile:
        if mode != "rb":
            raise ValueError(f"products are read-only: open them with 'rb', not {mode!r}")
        return ProductFile(self, self._strip_protocol(path), mode=mode, block_size=block_size or "default",
                           cache_options=cache_options, **kwargs)


class ProductFile(AbstractBufferedFile):  # type: ignore[misc]
    def _fetch_range(self, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        response = self.fs.http.get(f"/api/v1/products/{self.path}/content",
                                           headers={"Range": f"bytes={start}-{end - 1}"})
        raise_for(response)
        data: bytes = response.content
        return data


fsspec.register_implementation("skyweave", SkyweaveFileSystem, clobber=True)
