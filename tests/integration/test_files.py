"""External data named in place (issue 11, point 1): its content is part of the cache key, so an
edited or added raw file re-runs exactly what depends on it, and nothing is copied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave import Client
from skyweave.authoring.external import IN_PLACE, UntrackedPathWarning
from skyweave.errors import DefinitionError
from skyweave.model.records import ActivityRecord
from tests.integration import files_flow as flow


def write(path: Path, text: str, *, later: int = 0) -> None:
    """Write ``text``; ``later`` seconds added to the modification time (a later edit is visible
    even on a file system with coarse timestamps)."""
    path.write_text(text)
    if later:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + later * 1_000_000_000))


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(3):
        write(folder / f"exp{i:02d}.txt", " ".join(str(10 * i + k) for k in range(5)))
    return folder


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), executor="threads", workers=2) as c:
        yield c


def ran(acts: list[ActivityRecord]) -> list[str]:
    """What executed (not reused), as ``task[exposure key]``, sorted."""
    return sorted(f"{a.task_name}[{a.key}]" for a in acts
                  if a.state == "succeeded" and not (a.detours and a.detours[-1].kind == "reused"))


def test_an_edited_raw_file_reruns_only_what_depends_on_it(client: Client, raw: Path) -> None:
    first = client.run(flow.reduce, {"raw_dir": str(raw)}, timeout=60)
    assert first.status == "succeeded", first.summary()
    assert ran(first.activities()) == ["calibrate[0]", "calibrate[1]", "calibrate[2]", "find_exposures[]",
                                       "measure[0]", "measure[1]", "measure[2]", "summarise[]"]
    again = client.run(flow.reduce, {"raw_dir": str(raw)}, timeout=60)
    assert ran(again.activities()) == [], "nothing changed: everything reused"

    write(raw / "exp01.txt", "100 100 100 100 100", later=5)
    edited = client.run(flow.reduce, {"raw_dir": str(raw)}, timeout=60)
    assert edited.status == "succeeded"
    assert ran(edited.activities()) == ["calibrate[1]", "find_exposures[]", "measure[1]", "summarise[]"]
    assert edited.results()["exp01"] == 99.0, "the new content, not a stale result"
    assert edited.results()["exp00"] == first.results()["exp00"]


def test_a_file_added_to_the_folder_runs_and_the_rest_is_reused(client: Client, raw: Path) -> None:
    client.run(flow.reduce, {"raw_dir": str(raw)}, timeout=60)
    write(raw / "exp99.txt", "7 7 7")
    grown = client.run(flow.reduce, {"raw_dir": str(raw)}, timeout=60)
    assert grown.status == "succeeded"
    assert ran(grown.activities()) == ["calibrate[3]", "find_exposures[]", "measure[3]", "summarise[]"]
    assert grown.results()["exp99"] == 6.0


def test_the_glob_decides_what_counts(client: Client, raw: Path) -> None:
    client.run(flow.reduce_txt, {"raw_dir": str(raw)}, timeout=60)
    write(raw / "notes.log", "not an exposure")
    assert ran(client.run(flow.reduce_txt, {"raw_dir": str(raw)}, timeout=60).activities()) == []
    write(raw / "exp07.txt", "1 2 3")
    assert "calibrate[3]" in ran(client.run(flow.reduce_txt, {"raw_dir": str(raw)}, timeout=60).activities())


def test_with_a_content_hash_touching_a_file_reruns_nothing(client: Client, raw: Path) -> None:
    params = {"raw_dir": str(raw), "hash": "sha256"}
    client.run(flow.reduce_txt, params, timeout=60)
    (raw / "exp02.txt").touch()
    st = (raw / "exp02.txt").stat()
    os.utime(raw / "exp02.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert ran(client.run(flow.reduce_txt, params, timeout=60).activities()) == []
    write(raw / "exp02.txt", "5 5 5", later=10)
    assert ran(client.run(flow.reduce_txt, params, timeout=60).activities()) == [
        "calibrate[2]", "find_exposures[]", "measure[2]", "summarise[]"]


def test_files_are_registered_in_place_and_recorded_as_inputs(client: Client, raw: Path, tmp_path: Path
                                                              ) -> None:
    run = client.run(flow.one_file, {"raw": str(raw / "exp01.txt")}, timeout=60)
    assert run.status == "succeeded", run.summary()
    (cal,) = [a for a in run.activities() if a.task_name == "calibrate"]
    (usage,) = client.store.list_usages(activity_id=cal.id)
    assert usage.role == "raw_file"
    product = client.store.get_product(usage.product_id)
    assert product.uri == (raw / "exp01.txt").absolute().as_uri(), "where it is: not copied"
    assert product.activity_id is None and product.checksum and product.checksum.startswith("stat:")
    assert product.attributes[IN_PLACE]["kind"] == "file"
    assert (raw / "exp01.txt").exists()
    stored = [p.name for p in (tmp_path / "store" / "products").rglob("*") if p.is_file()]
    assert stored == ["exp01_cal.txt"]
    again = client.run(flow.one_file, {"raw": str(raw / "exp01.txt")}, timeout=60)
    assert ran(again.activities()) == []
    (cal2,) = [a for a in again.activities() if a.task_name == "calibrate"]
    assert cal2.arguments["raw_file"] == cal.arguments["raw_file"], "one product per file state"


def test_a_plain_path_to_an_existing_file_warns_at_submission(client: Client, raw: Path) -> None:
    with pytest.warns(UntrackedPathWarning, match=r"parameter 'path' of task 'count_lines'.*skyweave\.File"):
        client.submit(flow.untracked, {"path": str(raw / "exp00.txt")}).wait(timeout=60)


def test_a_missing_file_is_refused_at_submission(client: Client, raw: Path) -> None:
    with pytest.raises(DefinitionError, match="does not exist"):
        client.submit(flow.one_file, {"raw": str(raw / "nope.txt")})
