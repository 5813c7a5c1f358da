"""Workflows driven by the end-to-end CLI tests (module level, as workers import them)."""

from __future__ import annotations

import time
from typing import Any

from skyweave import Product, command, context, task, workflow


@task(version="1")
def numbers(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def shout(x: int) -> int:
    print(f"hello from shout {x}")
    return x * 10


@task(version="1")
def write_product(x: int, obs_id: str) -> Product:
    path = context().output(f"item{x}.txt")
    path.write_text(f"item {x}\n")
    return Product(path, type="e2e.item", obs_id=obs_id)


@task(version="1")
def add_up(values: list[int]) -> int:
    return sum(values)


@workflow
def simple(n: int = 3, obs_id: str = "obs1") -> Any:
    shouted = shout.map(x=numbers(n=n))
    files = write_product.map(x=numbers(n=n), obs_id=obs_id)
    return {"total": add_up(values=shouted), "files": files}


@task(version="1")
def explode(x: int) -> int:
    raise ValueError(f"boom-{x}: the detector is on fire")


@workflow
def failing(x: int = 7) -> Any:
    return explode(x=x)


exit_three = command("exit_three", "sh -c 'echo going down >&2; exit 3'", version="1")


@workflow
def command_fails() -> Any:
    return exit_three()


@task(version="1")
def busy(i: int, seconds: float, obs_id: str) -> Product:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    path = context().output(f"busy{i}.txt")
    path.write_text(f"{i} {n}\n")
    return Product(path, type="e2e.busy", obs_id=obs_id)


@workflow
def crashy(n: int = 12, seconds: float = 0.3, obs_id: str = "crash1") -> Any:
    return busy.map(i=numbers(n=n), seconds=seconds, obs_id=obs_id)


@task(version="1")
def gated(i: int, free: int, gate: str, obs_id: str) -> Product:
    """The first ``free`` activities to start (whichever they are) finish at once; the others wait
    until the file ``gate`` exists.

    A crash test kills the run while the gated ones wait, whatever the machine's speed and
    whatever order the items are claimed in."""
    from pathlib import Path

    gate_path = Path(gate)
    if not gate_path.exists():
        for k in range(free):
            try:
                Path(f"{gate}.ticket{k}").open("x").close()   # O_EXCL: one ticket per activity
                break
            except FileExistsError:
                continue
        else:
            while not gate_path.exists():
                time.sleep(0.02)
    path = context().output(f"gated{i}.txt")
    path.write_text(f"{i}\n")
    return Product(path, type="e2e.gated", obs_id=obs_id)


@workflow
def gated_fanout(n: int = 12, free: int = 3, gate: str = "gate", obs_id: str = "gate1") -> Any:
    return gated.map(i=numbers(n=n), free=free, gate=gate, obs_id=obs_id)


@workflow
def body_raises(n: int = 1) -> Any:
    """A workflow whose own body (not a task) raises while its graph is built."""
    if n > 0:
        raise ValueError("workflow body exploded")
    return numbers(n=n)


@task(version="1")
def needs_flag(path: str) -> str:
    """Fails until the file at ``path`` exists (a failure the user can fix, then retry)."""
    from pathlib import Path

    flag = Path(path)
    if not flag.exists():
        raise RuntimeError(f"flag {path} missing")
    return flag.read_text().strip()


@workflow
def flagged(path: str = "flag.txt") -> Any:
    return needs_flag(path=path)


count_words = command("count_words", "sh -c 'printf \"%s\\n\" \"{{$1}}\" | wc -c > \"$2\"' sh {params.word} {outputs.count}",
                      version="1", parameters={"word": str}, outputs={"count": "count.txt"})


@workflow
def command_ok(word: str = "sky weave") -> Any:
    return count_words(word=word)
