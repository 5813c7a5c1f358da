"""Tasks that wait (park) for a product registered from outside with `skyweave products add`."""

from __future__ import annotations

from typing import Any

from skyweave import MissingInput, Product, task, workflow

AUX = "e2e.aux.attitude"


@task(version="1", park=600.0)  # woken by `products add` long before: never a race with a loaded machine
def calibrate_long(obs_id: str, attitude: Product | None = None) -> str:
    if attitude is None:
        raise MissingInput("attitude", AUX, match={"obs_id": obs_id}, reason=f"no attitude for {obs_id}")
    return f"calibrated with {attitude.local_path.read_text().strip()}"


@workflow
def wait_long(obs_id: str = "obs-park") -> Any:
    return calibrate_long(obs_id=obs_id)


@task(version="1", park=1.0)
def calibrate_short(obs_id: str, attitude: Product | None = None) -> str:
    if attitude is None:
        raise MissingInput("attitude", AUX, match={"obs_id": obs_id}, reason=f"no attitude for {obs_id}")
    return "never"


@workflow
def wait_short(obs_id: str = "obs-short") -> Any:
    return calibrate_short(obs_id=obs_id)
