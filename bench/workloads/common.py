"""Plain functions shared by every tool, so all of them run exactly the same work.

``numpy_work`` is the W3 kernel: a fixed number of 128x128 FFTs, about 50 ms on one core of the
reference machine (numpy's FFT is single-threaded; the harness also sets ``OMP_NUM_THREADS=1``).
W4 uses the same kernel with fewer repetitions (about 10 ms).
"""

from __future__ import annotations

import numpy as np

W2_LENGTH = 200      # W2: a chain of this many dependent tasks
W3_TASKS = 64        # W3: this many ~50 ms numpy tasks, then a merge
W3_REPS = 340        # FFT repetitions in one W3 task (~50 ms)
W4_TASKS = 200       # W4: a fan-out of this many ~10 ms tasks, then a merge, run twice
W4_REPS = 70         # FFT repetitions in one W4 task (~10 ms)


def noop(i: int) -> int:
    return i


def total(xs: list[int]) -> int:
    return sum(xs)


def step(x: int) -> int:
    return x + 1


def numpy_work(i: int, reps: int = W3_REPS) -> float:
    rng = np.random.default_rng(i)
    a = rng.standard_normal((128, 128))
    for _ in range(reps):
        a = np.fft.fft2(a).real
        a /= np.abs(a).max()
    return float(a.sum())


def merge(xs: list[float]) -> float:
    return float(sum(xs))


def expected(workload: str, n: int) -> object:
    """The correct final result of a workload (checked by every tool's run)."""
    if workload == "W1":
        return n * (n - 1) // 2
    if workload == "W2":
        return W2_LENGTH
    return None  # float sums: only checked to be a number


def serial(workload: str, n: int) -> object:
    """The floor: a plain Python loop, no framework."""
    if workload == "W1":
        return total([noop(i) for i in range(n)])
    if workload == "W2":
        x = 0
        for _ in range(W2_LENGTH):
            x = step(x)
        return x
    if workload == "W3":
        return merge([numpy_work(i) for i in range(W3_TASKS)])
    if workload == "W4":
        return merge([numpy_work(i, W4_REPS) for i in range(W4_TASKS)])
    raise ValueError(workload)
