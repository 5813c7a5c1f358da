"""The Python task of ``bench/containers_bench.py --python``: imports only ``skyweave.task``, as a
task module in a container should (what the container pays is then skyweave's entry point)."""

from __future__ import annotations

from skyweave import task


@task(version="1", cache=False)
def py_write(i: int) -> int:
    return i
