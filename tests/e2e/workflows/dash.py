"""Workflows the dashboard's browser tests watch: a fan-out held at a gate file (its graph grows
while the test looks; nothing runs on until the test opens the gate), and one that fails."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skyweave import Product, context, task, workflow


@task(version="1")
def split(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def calibrate(chip: int, gate: str) -> Product:
    deadline = time.monotonic() + 120
    while not Path(gate).exists() and time.monotonic() < deadline:  # the test opens the gate
        time.sleep(0.05)
    path = context().output(f"chip{chip}.txt")
    path.write_text(f"calibrated chip {chip}\n")
    return Product(path, type="dash.calibrated", obs_id="dash1", detector=f"chip{chip}")


@task(version="1")
def mosaic(chips: list[Product]) -> Product:
    path = context().output("mosaic.txt")
    path.write_text("".join(p.local_path.read_text() for p in chips))
    return Product(path, type="dash.mosaic", obs_id="dash1")


@workflow
def growing(n: int, gate: str) -> Any:
    return mosaic(chips=calibrate.map(chip=split(n=n), gate=gate))


@task(version="1", retries=0)
def read_table(name: str) -> int:
    raise ValueError(f"the detector table {name!r} is empty")


@workflow
def broken(name: str = "wxt-cmos3") -> Any:
    return read_table(name=name)
