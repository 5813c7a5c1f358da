"""``Product``: what a task receives for an input file and returns for an output file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Product:
    """A file (or object) plus its metadata.

    A task *returns* ``Product(path, type=..., obs_id=..., detector=...)`` for each file it wrote;
    the worker moves the file into product storage, checksums it and registers it.  A file outside
    the activity's work directory (raw data) is registered where it is, never moved.  A task
    *receives* ``Product`` objects for its product inputs, with ``path`` pointing at a local copy
    and ``id``/``uri``/``checksum`` filled in.
    """

    path: Path | str
    type: str = "file"
    obs_id: str | None = None
    detector: str | None = None
    version: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    id: str | None = None
    uri: str | None = None
    checksum: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def local_path(self) -> Path:
        return Path(self.path)

    def __fspath__(self) -> str:
        return str(self.path)
