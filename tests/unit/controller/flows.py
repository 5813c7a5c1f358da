"""Tasks and workflows used by the controller tests (module level, as workers need)."""

from __future__ import annotations

from typing import Any

from skyweave import MissingInput, Product, each, gather, loop, result, task, unmapped, workflow


@task(version="1")
def items(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def square(x: int) -> int:
    return x * x


@task(version="1")
def total(values: list[int]) -> int:
    return sum(values)


@workflow
def fan(n: int = 5) -> Any:
    return total(values=square.map(x=items(n=n)))


@task(version="1")
def split(x: int) -> list[int]:
    return list(range(x))


@workflow
def nested(n: int = 3) -> Any:
    firsts = items(n=n)
    inner = split.map(x=firsts)              # depth 1, each returns a list
    leaves = square.map(x=each(inner))       # depth 2
    return total(values=leaves)


@task(version="1")
def is_big(x: int) -> bool:
    return x > 4


@workflow
def conditional(n: int = 4) -> Any:
    sq = square.map(x=items(n=n))
    kept = square.map(x=sq, when=sq > 4)
    return total(values=kept)


@task(version="1")
def optional_sum(base: int, extra: list[int]) -> dict[str, Any]:
    return {"total": base + sum(extra), "got": len(extra)}


@workflow
def optional_input(n: int = 4) -> Any:
    """``extra`` is skipped when n <= 4; ``gather`` makes it an optional input of ``optional_sum``."""
    sizes = total(values=square.map(x=items(n=n)))
    extra = total.options(when=sizes > 20)(values=square.map(x=items(n=n)))
    return optional_sum(base=sizes, extra=gather(extra))


@task(version="1")
def halve(state: dict[str, float] | None, start: float) -> dict[str, float]:
    value = start if state is None else state["value"] / 2
    return {"value": value, "delta": value / 2}


@workflow
def converge(start: float = 64.0, max_iterations: int = 10) -> Any:
    return loop(halve, until=result["delta"] < 1.0, max_iterations=max_iterations, start=start)


@task(version="1")
def make_aux(obs_id: str, window: float = 10.0) -> Product:
    return Product(f"aux-{obs_id}-{window}", type="aux", obs_id=obs_id, attributes={"window": window})


@task(version="1", providers={"aux": "make_aux"})
def needs_aux(obs_id: str, aux: Product | None = None) -> str:
    if aux is None:
        raise MissingInput("aux", "aux", match={"obs_id": obs_id}, provider_params={"window": 100.0})
    return f"used {aux.attributes['window']}"


@task(version="1")
def obs_ids(n: int) -> list[str]:
    return ["o1"] * n


@workflow
def backtracking(n: int = 3) -> Any:
    return needs_aux.map(obs_id=obs_ids(n=n))


@task(version="1", park=60.0)
def parks(obs_id: str, aux: Product | None = None) -> str:
    if aux is None:
        raise MissingInput("aux", "aux", match={"obs_id": obs_id})
    return "woken"


@workflow
def parking(obs_id: str = "o1") -> Any:
    return parks(obs_id=obs_id)


@task(version="1")
def never_provided(obs_id: str, aux: Product | None = None) -> str:
    if aux is None:
        raise MissingInput("aux", "aux", match={"obs_id": obs_id})
    return "ok"


@workflow
def unanswered(obs_id: str = "o1") -> Any:
    return never_provided(obs_id=obs_id)


FLAKY: dict[str, int] = {}


@task(version="1", retries=2, backoff=5.0)
def flaky(key: str, fail_times: int) -> str:
    FLAKY[key] = FLAKY.get(key, 0) + 1
    if FLAKY[key] <= fail_times:
        raise RuntimeError(f"transient failure {FLAKY[key]}")
    return "ok"


@workflow
def retrying(key: str = "k", fail_times: int = 1) -> Any:
    return flaky(key=key, fail_times=fail_times)


@task(version="1")
def job(i: int) -> int:
    return i


@workflow
def many(n: int = 10) -> Any:
    return job.map(i=items(n=n))


@task(version="1")
def not_a_list(n: int) -> int:
    return n


@workflow
def bad_fanout(n: int = 3) -> Any:
    return square.map(x=not_a_list(n=n))


@task(version="1")
def line_count(f: Product) -> int:
    return len(f.local_path.read_text().splitlines())


@task(version="1")
def k_of(n: int) -> int:
    return n


@task(version="1")
def times(x: int, k: int) -> int:
    return x * k


@workflow
def external(raw: str = "", n: int = 3) -> Any:
    count = line_count(f=Product("", id=raw))
    return times.map(x=items(n=n), k=unmapped(count))


@task(version="1")
def detectors(n: int) -> list[str]:
    return [f"d{i}" for i in range(n)]


@task(version="1")
def frames_of(detector: str) -> list[int]:
    return list(range(int(detector[1:]) + 1))  # d0 has 1 frame, d1 has 2, ...


@task(version="1")
def reduce_frame(detector: str, frame: int) -> str:
    return f"{detector}:{frame}"


@task(version="1")
def stack(frames: list[str]) -> str:
    return "+".join(frames)


@workflow
def per_detector(n: int = 3) -> Any:
    dets = detectors(n=n)
    frames = frames_of.map(detector=dets)
    reduced = reduce_frame.map(detector=dets, frame=each(frames))  # item of the frame's own detector
    return stack.map(frames=gather(reduced))                       # one stack per detector


@task(version="1")
def flag(ok: bool) -> dict[str, bool]:
    return {"ok": ok}


@workflow
def maybe_converge(ok: bool = True) -> Any:
    checked = flag(ok=ok)
    return loop(halve, until=result["delta"] < 1.0, max_iterations=5, start=8.0, when=checked["ok"])


@task(version="1")
def increment(x: int) -> int:
    return x + 1


@workflow
def chain(length: int = 20) -> Any:
    x: Any = 0
    for _ in range(length):
        x = increment(x=x)
    return x
