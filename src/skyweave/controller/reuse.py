"""Answering the core's cache checks from the store: a succeeded activity with the same key whose
every output is still what was registered is reused; anything else runs, with the reason.

Shared by the controller's shell and by ``plan`` (what a submission would reuse, before it runs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from skyweave.controller.decisions import CacheChecked, CheckCache, walk_products
from skyweave.errors import NotFoundError
from skyweave.model import messages as m
from skyweave.storage import describe, inplace, verify
from skyweave.store.base import Store

log = logging.getLogger(__name__)


def check_caches(store: Store, checks: Sequence[CheckCache]) -> list[CacheChecked]:
    """Answer cache checks: a succeeded activity with the same key, whose every output is still
    there with the checksum it was registered with (streamed), is reused; anything else runs."""
    found = store.find_reusable([c.cache_key for c in checks])
    answers: list[CacheChecked] = []
    for check in checks:
        hit = found.get(check.cache_key)
        if hit is None or hit.id == check.activity_id:
            answers.append(CacheChecked(activity_id=check.activity_id))
            continue
        refs: list[m.ProductRef] = []
        problem = ""
        for pid in walk_products(hit.result):
            problem, ref = intact(store, pid, hit.id)
            if problem:
                break
            assert ref is not None
            refs.append(ref)
        if problem:
            log.warning("not reusing %s for %s: %s", hit.id, check.activity_id, problem)
            answers.append(CacheChecked(activity_id=check.activity_id, miss_reason=problem))
        else:
            answers.append(CacheChecked(activity_id=check.activity_id, reuse_from=hit.id,
                                        result=hit.result, products=refs))
    return answers


def intact(store: Store, product_id: str, activity_id: str) -> tuple[str, m.ProductRef | None]:
    """Whether an output of ``activity_id`` is still what was registered ("" and its ref if so)."""
    try:
        p = store.get_product(product_id)
    except NotFoundError:
        return f"output {product_id} of {activity_id} is not in the store", None
    if p.state != "available":
        return f"output {product_id} of {activity_id} was {p.state}", None
    if inplace.is_in_place(p.attributes):  # a File/Folder the activity returned: as it was?
        change = inplace.change(p.uri, p.checksum, p.attributes)
        if change:
            return f"output {product_id} of {activity_id}: {change}", None
        return "", m.product_ref(p)
    problem = verify(p.uri, p.checksum)  # any scheme the storage registry knows, streamed
    if problem == "gone":
        return f"output {product_id} of {activity_id} is gone from {describe(p.uri)}", None
    if problem == "changed":
        return (f"output {product_id} of {activity_id} was modified behind skyweave's back "
                f"({describe(p.uri)}: checksum differs from the recorded {(p.checksum or '')[:19]}…)"), None
    if problem:
        return f"output {product_id} is at {p.uri}, which cannot be verified here: {problem}", None
    return "", m.product_ref(p)
