"""Where an activity runs when there are several sites (``controller/placement.py``)."""

from __future__ import annotations

from skyweave.controller.placement import Sites, input_bytes, place, site_of
from skyweave.model.messages import ProductRef

ROOTS = {"east": "/data/east", "west": "s3://bucket/west", "east-raw": "/data/east/raw"}
SITES = Sites(home="east", roots=ROOTS)


def ref(uri: str, size: int | None) -> ProductRef:
    return ProductRef(id=uri, uri=uri, size=size)


def test_a_product_belongs_to_the_site_whose_root_holds_it_the_longest_root_winning() -> None:
    assert site_of("/data/east/p/x.fits", ROOTS) == "east"
    assert site_of("file:///data/east/p/x.fits", ROOTS) == "east", "a file:// URL of the same path"
    assert site_of("/data/east/raw/x.fits", ROOTS) == "east-raw"
    assert site_of("s3://bucket/west/x.fits", ROOTS) == "west"
    assert site_of("/data/eastern/x.fits", ROOTS) == "", "a root is a folder, not a string prefix"
    assert site_of("/elsewhere/x.fits", ROOTS) == ""


def test_an_activity_runs_where_most_of_its_input_bytes_are() -> None:
    inputs = [ref("/data/east/a", 10), ref("/data/east/b", 10), ref("s3://bucket/west/c", 30)]
    assert input_bytes(inputs, ROOTS) == {"east": 20, "west": 30}
    assert place("", inputs, SITES) == "west", "30 bytes at west against 20 at east"
    assert place("", inputs[:2], SITES) == "east"


def test_a_pinned_site_wins_over_the_data() -> None:
    assert place("west", [ref("/data/east/a", 10**9)], SITES) == "west"


def test_without_located_inputs_work_goes_home_and_ties_go_by_name() -> None:
    assert place("", [], SITES) == "east"
    assert place("", [ref("/elsewhere/x", 5)], SITES) == "east"
    assert place("", [], Sites()) == "", "no sites: the workers with no site"
    tie = [ref("/data/east/a", 5), ref("s3://bucket/west/b", 5)]
    assert place("", tie, Sites(roots=ROOTS)) == "east"
    assert place("", [ref("/data/east/a", None)], Sites(home="west", roots=ROOTS)) == "east", \
        "an input of unknown size still says where the data is"
