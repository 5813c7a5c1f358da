"""Inputs brought to the site an activity runs at (``executors/transfers.py``)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from skyweave.executors.transfers import bring_inputs, with_moves
from skyweave.model import messages as m
from skyweave.model.specs import TaskSpec
from skyweave.storage import open_storage
from tests.s3 import new_bucket


def _dispatch(**refs: m.ProductRef) -> m.DispatchActivity:
    return m.DispatchActivity(activity_id="act-1", attempt=1, run_id="run-1",
                              task=TaskSpec(name="t", version="1"), arguments={}, products=refs)


def test_only_inputs_held_by_another_site_are_copied_and_each_move_is_recorded(tmp_path: Path) -> None:
    east, west = tmp_path / "east", tmp_path / "west"
    (east / "p").mkdir(parents=True)
    (west / "p").mkdir(parents=True)
    (east / "p" / "raw.dat").write_bytes(b"r" * 300)
    (west / "p" / "cal.dat").write_bytes(b"c" * 7)
    dispatch = _dispatch(raw=m.ProductRef(id="raw", uri=f"file://{east}/p/raw.dat", size=300),
                         cal=m.ProductRef(id="cal", uri=str(west / "p" / "cal.dat"), size=7),
                         gone=m.ProductRef(id="gone", uri=str(east / "p" / "missing.dat")),
                         outside=m.ProductRef(id="outside", uri=str(tmp_path / "elsewhere.dat")))
    brought, moves = bring_inputs(dispatch, site="west", roots={"east": str(east), "west": str(west)},
                                  into=west / "products")
    assert [(x["product"], x["from"], x["to"], x["bytes"]) for x in moves] == [("raw", "east", "west", 300)]
    copy = Path(brought.products["raw"].uri)
    assert copy.is_relative_to(west / "products" / "transfers") and copy.read_bytes() == b"r" * 300
    assert brought.products["cal"] == dispatch.products["cal"], "already at this site: not moved"
    assert brought.products["gone"] == dispatch.products["gone"], "a missing input is left for the task to report"
    assert brought.products["outside"] == dispatch.products["outside"]
    assert moves[0]["seconds"] >= 0 and moves[0]["source"] == dispatch.products["raw"].uri


def test_nothing_to_move_leaves_the_dispatch_as_it_was(tmp_path: Path) -> None:
    dispatch = _dispatch(a=m.ProductRef(id="a", uri=str(tmp_path / "west" / "a")))
    brought, moves = bring_inputs(dispatch, site="west", roots={"west": str(tmp_path / "west")}, into=tmp_path)
    assert (brought, moves) == (dispatch, [])


def test_the_moves_go_into_the_attempts_usage() -> None:
    outcome = m.ActivityFinished(activity_id="act-1", attempt=1, usage=m.Usage(wall_s=1.0, custom={"k": 1}))
    moves = [{"product": "raw", "from": "east", "to": "west", "bytes": 300, "seconds": 0.01}]
    usage = with_moves(outcome, moves).usage
    assert usage.wall_s == 1.0 and usage.custom["k"] == 1
    assert usage.custom["transfer_bytes"] == 300
    assert json.loads(str(usage.custom["transfers"])) == moves


def test_an_input_in_a_bucket_is_brought_to_a_folder_site_through_the_storage_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real S3 server (moto): an input held by a site whose storage is a bucket is streamed
    into this site's folder, and the move recorded with its bytes."""
    bucket = new_bucket(monkeypatch)
    east = open_storage(f"s3://{bucket}/east")
    stored = east.put("products/run-1/a/raw.dat", io.BytesIO(b"r" * 1234))
    west = tmp_path / "west"
    dispatch = _dispatch(raw=m.ProductRef(id="raw", uri=stored.uri, size=1234),
                         gone=m.ProductRef(id="gone", uri=f"s3://{bucket}/east/products/run-1/a/none.dat"))
    brought, moves = bring_inputs(dispatch, site="west", roots={"east": f"s3://{bucket}/east",
                                                                  "west": str(west)}, into=west / "products")
    assert [(x["product"], x["from"], x["to"], x["bytes"], x["source"]) for x in moves] == [
        ("raw", "east", "west", 1234, stored.uri)]
    copy = Path(brought.products["raw"].uri)
    assert copy == west / "products" / "transfers" / "act-1" / "raw" / "raw.dat"
    assert copy.read_bytes() == b"r" * 1234 and moves[0]["destination"] == str(copy)
    assert brought.products["gone"] == dispatch.products["gone"], "a missing object is left for the task"


def test_an_input_in_a_folder_is_brought_to_a_site_whose_storage_is_a_bucket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = new_bucket(monkeypatch)
    east = tmp_path / "east"
    (east / "p").mkdir(parents=True)
    (east / "p" / "raw.dat").write_bytes(b"x" * 99)
    (east / "p" / "folder").mkdir()
    dispatch = _dispatch(raw=m.ProductRef(id="raw", uri=f"file://{east}/p/raw.dat", size=99),
                         folder=m.ProductRef(id="folder", uri=str(east / "p" / "folder")))
    west = open_storage(f"s3://{bucket}/west").within("products")
    brought, moves = bring_inputs(dispatch, site="west", roots={"east": str(east), "west": f"s3://{bucket}/west"},
                                  into=west)
    uri = f"s3://{bucket}/west/products/transfers/act-1/raw/raw.dat"
    assert [(x["product"], x["bytes"], x["destination"]) for x in moves] == [("raw", 99, uri)]
    assert brought.products["raw"].uri == uri
    assert open_storage(f"s3://{bucket}/west").stat("products/transfers/act-1/raw/raw.dat").size == 99
    assert brought.products["folder"] == dispatch.products["folder"], \
        "a folder cannot become one object: left where it is (and logged)"
