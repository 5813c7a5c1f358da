"""A workflow the remote-client tests upload to a server: images made per band (a fan-out), each
taking ``seconds``, merged into one product."""

from __future__ import annotations

import time
from typing import Any

from skyweave import Product, context, task, workflow


@task(version="1")
def bands(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def image(band: int, seconds: float) -> Product:
    time.sleep(seconds)
    path = context().output(f"band{band}.txt")
    path.write_text(f"image of band {band}\n")
    return Product(path, type="test.image", obs_id="remote1", detector=f"band{band}")


@task(version="1")
def merge(images: list[Product]) -> Product:
    path = context().output("merged.txt")
    path.write_text("".join(p.local_path.read_text() for p in images))
    return Product(path, type="test.merged", obs_id="remote1")


@workflow
def imaging(n: int = 3, seconds: float = 0.0) -> Any:
    images = image.map(band=bands(n=n), seconds=seconds)
    return {"merged": merge(images=images), "bands": n}
