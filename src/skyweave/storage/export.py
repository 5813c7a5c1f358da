"""Products' files out of the store into a folder of the user's: ``skyweave products export``.

Each file keeps its name in the folder; products of one export whose names collide each go to
``<folder>/<product id>/<name>`` instead.  ``link=True`` makes symbolic links to the stored files
rather than copies (nothing is read; a link breaks if cleanup later deletes the file).

Nothing in the folder is ever overwritten, and nothing is half done on bad input: every selected
product is checked first (its file must be local and present; a product whose file ``cleanup``
deleted is skipped and reported), and a name already taken in the folder by anything but the same
file (a link to it, or a copy with the recorded checksum) is refused before anything is written.
A copy is hashed as it is made (one pass over the data) and must match the product's recorded
checksum: a stored file that changed since it was recorded is reported, and its copy removed.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skyweave.errors import SkyweaveError
from skyweave.model.records import ProductRecord
from skyweave.storage.local import LocalStorage, checksum_file, copy_and_hash

SHOWN = 5
"""Problems listed in one error message."""


class ExportError(SkyweaveError):
    """Products that cannot be exported, or a folder whose names are taken."""

    exit_code = 1


@dataclass(frozen=True)
class Exported:
    product: ProductRecord
    path: Path
    """Where it is in the folder."""
    action: str
    """``copied``, ``linked``, or ``present`` (already there: the same file or a link to it)."""


@dataclass(frozen=True)
class Skipped:
    product: ProductRecord
    reason: str


@dataclass(frozen=True)
class _Item:
    product: ProductRecord
    source: Path
    target: Path


def export_products(products: Sequence[ProductRecord], folder: Path, *, link: bool = False
                    ) -> tuple[list[Exported], list[Skipped]]:
    """Copy (or link) the files of ``products`` into ``folder``; see the module docstring."""
    items, skipped = _plan(products, folder)
    present = _present(items, link)
    done: list[Exported] = []
    for item in items:
        if item.product.id in present:
            done.append(Exported(item.product, item.target, "present"))
            continue
        item.target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.symlink(item.source.resolve(), item.target)
            done.append(Exported(item.product, item.target, "linked"))
        else:
            _copy(item)
            done.append(Exported(item.product, item.target, "copied"))
    return done, skipped


def _plan(products: Sequence[ProductRecord], folder: Path) -> tuple[list[_Item], list[Skipped]]:
    skipped: list[Skipped] = []
    sources: list[tuple[ProductRecord, Path]] = []
    problems: list[str] = []
    for product in {p.id: p for p in products}.values():
        if product.state == "deleted":
            skipped.append(Skipped(product, "its file was deleted by cleanup (the record stays)"))
            continue
        try:
            source = LocalStorage.local_path(product.uri)
        except SkyweaveError as exc:
            problems.append(f"{product.id}: {exc.message}")
            continue
        if not source.exists():
            problems.append(f"{product.id}: its file {source} is missing")
            continue
        sources.append((product, source))
    if problems:
        raise ExportError(_listed("cannot export", problems),
                          hint="export the other products by id (`skyweave products list --run RUN`)")
    names = Counter(source.name for _, source in sources)
    items = [_Item(p, source, folder / (source.name if names[source.name] == 1 else Path(p.id, source.name)))
             for p, source in sources]
    return items, skipped


def _present(items: Sequence[_Item], link: bool) -> set[str]:
    """Products already in the folder; refuses the export if a name is taken by anything else."""
    present: set[str] = set()
    taken: list[str] = []
    for item in items:
        target = item.target
        if not (target.exists() or target.is_symlink()):
            continue
        if _same_file(item, link):
            present.add(item.product.id)
        else:
            taken.append(f"{target} (for {item.product.id})")
    if taken:
        raise ExportError(_listed("names already taken in the folder by other files", taken),
                          hint="export into a new or empty folder, or move those files away; "
                               "nothing was written")
    return present


def _same_file(item: _Item, link: bool) -> bool:
    """Is ``item.target`` already this product: a link to its file, or (copying) a copy of it?"""
    target = item.target
    if target.is_symlink():
        return target.resolve() == item.source.resolve()
    return (not link and target.is_file() and item.source.is_file()
            and target.stat().st_size == item.source.stat().st_size
            and item.product.checksum is not None and checksum_file(target) == item.product.checksum)


def _copy(item: _Item) -> None:
    if item.source.is_dir():
        shutil.copytree(item.source, item.target, symlinks=True)
        return
    checksum, _ = copy_and_hash(item.source, item.target)
    expected = item.product.checksum
    if expected is not None and checksum != expected:
        item.target.unlink()
        raise ExportError(
            f"the stored file of {item.product.id} ({item.source}) has changed since it was recorded "
            f"(checksum {checksum[:19]}…, recorded {expected[:19]}…); not exported",
            hint=f"see where it came from with `skyweave products show {item.product.id}`; "
                 "the products exported before it are in place")
    shutil.copystat(item.source, item.target)


def _listed(what: str, problems: Sequence[str]) -> str:
    more = f"\n  … and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"{what}:\n  " + "\n  ".join(problems[:SHOWN]) + more
