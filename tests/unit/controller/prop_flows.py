"""Tasks and workflows for the controller's property tests (module level, as workers need).

Every task retries (3 attempts, 1 s backoff doubling) so injected retryable failures exercise the
retry path; each workflow's final value has a closed form the tests compute directly.
"""

from __future__ import annotations

from typing import Any

from skyweave import Product, each, gather, task, workflow


@task(version="1", retries=2, backoff=1.0)
def p_items(n: int) -> list[int]:
    return list(range(n))


@task(version="1", retries=2, backoff=1.0)
def p_square(x: int) -> int:
    return x * x


@task(version="1", retries=2, backoff=1.0)
def p_split(x: int) -> list[int]:
    return list(range(x))


@task(version="1", retries=2, backoff=1.0)
def p_total(values: list[int]) -> int:
    return sum(values)


@task(version="1", retries=2, backoff=1.0)
def p_group(xs: list[int], values: list[int]) -> int:
    return len(xs) * 1000 + sum(values)


@task(version="1", retries=2, backoff=1.0)
def p_make(x: int) -> Product:
    return Product(f"sq-{x}", type="square", attributes={"value": x * x})


@task(version="1", retries=2, backoff=1.0)
def p_sum_products(products: list[Product]) -> int:
    return sum(p.attributes["value"] for p in products)


@workflow
def p_fan(n: int = 5) -> Any:
    """Depth 1: sum of i*i for i < n."""
    return p_total(values=p_square.map(x=p_items(n=n)))


@workflow
def p_nested(n: int = 3) -> Any:
    """Depth 2: sum of j*j for j < x for x < n."""
    inner = p_split.map(x=p_items(n=n))
    return p_total(values=p_square.map(x=each(inner)))


@workflow
def p_groups(n: int = 3) -> Any:
    """Depth 2 with a gather per group at depth 1, then a gather of the groups."""
    inner = p_split.map(x=p_items(n=n))
    leaves = p_square.map(x=each(inner))
    groups = p_group.map(xs=inner, values=gather(leaves))
    return p_total(values=groups)


@workflow
def p_products(n: int = 3) -> Any:
    """Products flow through a fan-out and a gather: sum of i*i for i < n."""
    return p_sum_products(products=p_make.map(x=p_items(n=n)))


def expected(flow: str, n: int) -> int:
    if flow in ("p_fan", "p_products"):
        return sum(i * i for i in range(n))
    if flow == "p_nested":
        return sum(j * j for x in range(n) for j in range(x))
    if flow == "p_groups":
        return sum(x * 1000 + sum(j * j for j in range(x)) for x in range(n))
    raise AssertionError(flow)


FLOWS = {"p_fan": p_fan, "p_nested": p_nested, "p_groups": p_groups, "p_products": p_products}


# -- for the queue-order tests: no cache check in the way, so activities queue when created ------


@task(version="1", cache=False)
def q_items(n: int) -> list[int]:
    return list(range(n))


@task(version="1", cache=False)
def q_job(i: int) -> int:
    return i


@workflow
def q_fan(n: int = 3) -> Any:
    return q_job.map(i=q_items(n=n))


FLOWS_UNCACHED = {"q_fan": q_fan}
