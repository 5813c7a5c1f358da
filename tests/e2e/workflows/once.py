"""A workflow whose every execution leaves a line in a ledger file, so that crash tests can count
executions independently of what skyweave records."""

from __future__ import annotations

import os
import time
from typing import Any

from skyweave import Product, context, task, workflow


def _note(ledger: str, what: str) -> None:
    ctx = context()
    # the session is the worker's (it is started as a session leader): it names the worker
    line = f"{what} {ctx.activity_id} {ctx.attempt} {os.getpid()} {os.getsid(0)} {time.time():.6f}\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


@task(version="1")
def items(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def counted(i: int, seconds: float, ledger: str, gate: str = "", gate_from: int = -1) -> int:
    """Writes ``start`` before and ``end`` after its work (``seconds`` of sleep); items from
    ``gate_from`` on also wait for the file ``gate`` (the test opens it), so some work is surely
    running when the test looks for a busy worker."""
    _note(ledger, "start")
    time.sleep(seconds)
    deadline = time.monotonic() + 300
    while gate and 0 <= gate_from <= i and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    _note(ledger, "end")
    return i


@workflow
def many(n: int = 10, seconds: float = 0.01, ledger: str = "ledger.txt", gate: str = "", gated: int = 0) -> Any:
    return counted.map(i=items(n=n), seconds=seconds, ledger=ledger, gate=gate,
                       gate_from=n - gated if gated else -1)


@task(version="1")
def counted_product(i: int, seconds: float, ledger: str) -> Product:
    """As ``counted``, and makes a small file product whose content names its item."""
    _note(ledger, "start")
    time.sleep(seconds)
    path = context().output(f"item{i}.txt")
    path.write_text(f"item {i}\n")
    _note(ledger, "end")
    return Product(path, type="e2e.counted", obs_id=f"obs{i % 100}")


@workflow
def many_products(n: int = 10, seconds: float = 0.0, ledger: str = "ledger.txt") -> Any:
    return counted_product.map(i=items(n=n), seconds=seconds, ledger=ledger)
