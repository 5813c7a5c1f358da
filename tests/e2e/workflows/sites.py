"""A run over two sites (docs/operations.md, "Several sites"): raw data made at ``east`` (large),
a calibration table at ``west`` (small); ``combine`` is not pinned and runs where most of its input
bytes are (east); ``archive`` is pinned to west, so the raw data must move there."""

from __future__ import annotations

from typing import Any

from skyweave import Product, context, task, workflow


@task(version="1", site="east")
def observe(obs_id: str, size: int) -> Product:
    path = context().output(f"{obs_id}_raw.dat")
    path.write_bytes(b"r" * size)
    return Product(path, type="sites.raw", obs_id=obs_id)


@task(version="1", site="west")
def calibration(obs_id: str) -> Product:
    path = context().output(f"{obs_id}_cal.dat")
    path.write_bytes(b"c" * 100)
    return Product(path, type="sites.cal", obs_id=obs_id)


@task(version="1", cache=False)
def combine(raw: Product, cal: Product) -> int:
    return raw.path.stat().st_size + cal.path.stat().st_size


@task(version="1", site="west", cache=False)
def archive(raw: Product) -> int:
    return raw.path.stat().st_size


@workflow
def two_sites(obs_id: str = "o1", size: int = 5000) -> Any:
    raw = observe(obs_id=obs_id, size=size)
    return {"combined": combine(raw=raw, cal=calibration(obs_id=obs_id)), "archived": archive(raw=raw)}


@task(version="1", cache=False)
def note(obs_id: str) -> Product:
    """Not pinned and no input: placed at the controller's home site."""
    path = context().output(f"{obs_id}_note.txt")
    path.write_text(f"observed {obs_id}\n")
    return Product(path, type="sites.note", obs_id=obs_id)


@workflow
def fallback(obs_id: str = "o2") -> Any:
    """``note`` goes elsewhere when its site has no live worker; ``observe`` (pinned) waits for one."""
    return {"note": note(obs_id=obs_id), "raw": observe(obs_id=obs_id, size=10)}
