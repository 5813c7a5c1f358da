from __future__ import annotations

import pytest

from skyweave.provenance import ids


def test_identifiers_have_the_ivoa_form_and_parse_back() -> None:
    a = ids.activity_id("act-01jd8x3k2m9q7v5r4t6w")
    assert a == "ivo://skyweave.local/activity?act-01jd8x3k2m9q7v5r4t6w"
    assert ids.parse(a) == ("skyweave.local", "activity", "act-01jd8x3k2m9q7v5r4t6w")
    assert str(ids.parse(a)) == a
    p = ids.product_id("prd-01abc", "ep.nao.cas")
    assert ids.parse(p).kind == "product" and ids.parse(p).authority == "ep.nao.cas"
    assert ids.parse(ids.run_id("run-1")).local == "run-1"
    t = ids.task_id("calibrate", "2.1")
    assert t == "ivo://skyweave.local/task?calibrate@2.1"
    assert ids.parse_task(t) == ("calibrate", "2.1")


@pytest.mark.parametrize("authority", ["", "ab", "-bad", "has space", "a/b"])
def test_invalid_authority_is_refused(authority: str) -> None:
    with pytest.raises(ids.InvalidIdentifierError, match="not a valid IVOA authority"):
        ids.activity_id("act-1", authority)


@pytest.mark.parametrize("text", ["http://x/activity?a", "ivo://skyweave.local/activity", "ivo://skyweave.local/bogus?x",
                                  "ivo://skyweave.local/activity?a b"])
def test_malformed_identifiers_are_refused(text: str) -> None:
    with pytest.raises(ids.InvalidIdentifierError):
        ids.parse(text)


def test_task_identifier_needs_a_version() -> None:
    with pytest.raises(ids.InvalidIdentifierError, match="not a task identifier"):
        ids.parse_task(ids.activity_id("act-1"))
