"""`reprocess --dry-run` says why once per input, not once per upstream activity (a gather of a
fan-out of 100 listed 100 identical lines)."""

from __future__ import annotations

from skyweave import reprocess as rp


def test_one_reason_per_input_whatever_the_fan_out() -> None:
    sources = [(f"prd-{i}", f"act-{i}") for i in range(100)]
    assert rp._from_rerunning("values", sources) == [
        "input 'values' (100 products) comes from 100 activities that re-run (act-0, act-1, act-2, …)"]
    assert rp._from_rerunning("image", [("prd-1", "act-1")]) == [
        "input 'image' (prd-1) comes from act-1, which re-runs"]
    assert rp._from_rerunning("image", []) == []
