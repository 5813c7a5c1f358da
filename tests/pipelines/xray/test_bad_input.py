"""Bad input through the whole pipeline under skyweave: the documented handling, nothing lost, and
the rest (other detectors, other observations) carries on.

Documented handling (``xray_ep.l1``, ``xray_ep.l2``, ``xray_ep.l3_image``):
* a telemetry packet failing its CRC is skipped, counted (NBADPKT in every L1/L2 header of the
  file, a warning in the log) and the decoder resynchronises: the other packets and detectors are
  decoded exactly; a detector none of whose packets survive is not in the fan-out;
* a file that is not (complete) telemetry: the run fails with ``Fatal`` at ``list_cmos``, naming
  the file and the problem; runs of other observations are not affected;
* an event list without the columns a stage needs: ``Fatal`` naming the column;
* an attitude file with a gap inside the observation: the gap becomes a hole in the GTIs, its
  events are dropped *and counted* (NGTIDROP), the exposure (header and exposure map) loses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from skyweave import Client, workflow
from xray_ep import conventions as cv
from xray_ep import l3_image
from xray_ep.l1 import scan
from xray_ep.simulate import simulate_observation
from xray_ep.workflow import observation

GAP = (500.0, 540.0)
"""Attitude samples strictly inside [tstart + 500, tstart + 540] are removed."""


@workflow
def image_and_detect(events_id: str) -> Any:
    from skyweave import Product

    events = Product("", id=events_id)
    image = l3_image.make_image(events=events)
    return l3_image.detect_sources(image=image, events=events)


def corrupt(l0: Path, out: Path, cmos_index: int, every: bool) -> tuple[int, int]:
    """Flip a payload byte of the first (or of every) packet of one CMOS; returns the number of
    packets and events spoiled."""
    tel = scan(l0)
    data = bytearray(l0.read_bytes())
    hits = np.flatnonzero(tel.cmos == cmos_index)
    hits = hits if every else hits[:1]
    for k in hits:
        data[int(tel.offsets[k])] ^= 0xFF
    out.write_bytes(bytes(data))
    return int(hits.size), int(tel.counts[hits].sum())


def truth_counts(sim: dict[str, Any]) -> dict[str, int]:
    with np.load(sim["events"]) as npz:
        cmos = npz["CMOS"]
    return {c: int(np.sum(cmos == cv.cmos_index(c))) for c in sim["cmos"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("bad")
    archive = base / "archive"
    sims = {o: simulate_observation(base / o, o, seed, n_cmos=3, archive_dir=archive)
            for o, seed in (("ep0101", 31), ("ep0102", 32), ("ep0104", 34))}
    one = sims["ep0101"]
    spoiled_one = corrupt(Path(one["l0"]), base / "one.l0", cv.cmos_index(one["cmos"][1]), every=False)
    all_of = sims["ep0102"]
    spoiled_all = corrupt(Path(all_of["l0"]), base / "all.l0", cv.cmos_index(all_of["cmos"][0]), every=True)
    broken = base / "ep0103.l0"
    broken.write_bytes(b"EPL0" + bytes(range(40)) * 3)  # right magic, garbage header
    gap = sims["ep0104"]
    with fits.open(gap["attitude"]) as hdul:
        t = hdul[cv.ATTITUDE_EXT].data["TIME"]
        hole = (t > gap["tstart"] + GAP[0]) & (t < gap["tstart"] + GAP[1])
        hdul[cv.ATTITUDE_EXT].data = hdul[cv.ATTITUDE_EXT].data[~hole]
        hdul.writeto(base / "gap_att.fits")
    bad_events = base / "no_x.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format="D", array=np.zeros(5)) for n in ("TIME", "Y", "PI")],
        name="EVENTS")]).writeto(bad_events)

    out: dict[str, Any] = {"sims": sims, "spoiled_one": spoiled_one, "spoiled_all": spoiled_all}
    with Client(str(base / "st"), workers=2) as client:
        l0 = {"ep0101": base / "one.l0", "ep0102": base / "all.l0", "ep0103": broken,
              "ep0104": Path(gap["l0"])}
        ids = {o: client.add_product(p, type=cv.L0_TELEMETRY, obs_id=o).id for o, p in l0.items()}
        client.add_product(base / "gap_att.fits", type=cv.AUX_ATTITUDE, obs_id="ep0104")
        client.add_product(gap["orbit"], type=cv.AUX_ORBIT, obs_id="ep0104")
        ev = client.add_product(bad_events, type=cv.L2_EVENTS, obs_id="ep0105")
        handles = {o: client.submit(observation, {"l0": i, "obs_id": o, "archive": str(archive)})
                   for o, i in ids.items()}
        handles["ep0105"] = client.submit(image_and_detect, {"events_id": ev.id})
        for o, h in handles.items():
            h.wait(timeout=240)
            out[o] = {"status": h.status, "summary": h.summary(), "activities": h.activities(),
                      "products": h.products(),
                      "results": h.results() if h.status == "succeeded" else None}
        out["bad_events"] = client.store.get_product(ev.id)
    return out


def _per_cmos(products: list[Any], ptype: str) -> dict[str, Any]:
    return {p.detector: p for p in products if p.type == ptype and p.detector}


def test_one_corrupt_packet_loses_that_packet_only(runs: dict[str, Any]) -> None:
    run, sim = runs["ep0101"], runs["sims"]["ep0101"]
    assert run["status"] == "succeeded", run["summary"]
    n_packets, n_events = runs["spoiled_one"]
    assert n_packets == 1
    truth = truth_counts(sim)
    l1 = _per_cmos(run["products"], cv.L1_EVENTS)
    assert sorted(l1) == sim["cmos"]
    for cmos, product in l1.items():
        h = fits.getheader(Path(product.uri.removeprefix("file://")), cv.EVENTS_EXT)
        assert h["NBADPKT"] == 1  # the file's count, on every detector's list
        lost = n_events if cmos == sim["cmos"][1] else 0
        assert product.attributes["n_events"] == truth[cmos] - lost
    assert len(runs["ep0101"]["results"]["sources"]) > 0


def test_a_detector_with_every_packet_corrupt_drops_out_and_the_others_continue(runs: dict[str, Any]) -> None:
    run, sim = runs["ep0102"], runs["sims"]["ep0102"]
    assert run["status"] == "succeeded", run["summary"]
    n_packets, _ = runs["spoiled_all"]
    truth = truth_counts(sim)
    l1 = _per_cmos(run["products"], cv.L1_EVENTS)
    assert sorted(l1) == sim["cmos"][1:]  # the spoiled detector is not in the fan-out
    for cmos, product in l1.items():
        assert product.attributes["n_events"] == truth[cmos]
        assert product.attributes["nbadpkt"] == n_packets  # the loss is on record
    merged = runs["ep0102"]["results"]["events"]
    assert merged.attributes["cmos"] == sim["cmos"][1:]


def test_a_broken_telemetry_file_fails_its_run_clearly_and_only_it(runs: dict[str, Any]) -> None:
    run = runs["ep0103"]
    assert run["status"] == "failed"
    (failure,) = run["summary"]["failures"]
    assert failure["task"] == "list_cmos"
    assert "ep0103.l0" in failure["error"] and "CRC" in failure["error"]
    act = next(a for a in run["activities"] if a.task_name == "list_cmos")
    assert act.error["type"].rsplit(".", 1)[-1] == "Fatal" and act.attempt == 1  # Fatal: not retried
    assert {runs[o]["status"] for o in ("ep0101", "ep0102", "ep0104")} == {"succeeded"}


def test_an_event_list_missing_a_column_fails_naming_it(runs: dict[str, Any]) -> None:
    run = runs["ep0105"]
    assert run["status"] == "failed"
    (failure,) = run["summary"]["failures"]
    assert failure["task"] == "make_image" and "'X'" in failure["error"]
    assert runs["bad_events"].state == "available"  # the input is kept for inspection


def test_an_attitude_gap_becomes_a_gti_hole_and_its_events_are_counted(runs: dict[str, Any]) -> None:
    run, sim = runs["ep0104"], runs["sims"]["ep0104"]
    assert run["status"] == "succeeded", run["summary"]
    t0 = sim["tstart"]
    with np.load(sim["events"]) as npz:
        cmos = npz["CMOS"]
    l2 = _per_cmos(run["products"], cv.L2_EVENTS)
    assert sorted(l2) == sim["cmos"]
    for name, product in l2.items():
        path = Path(product.uri.removeprefix("file://"))
        with fits.open(path) as hdul:
            gti = np.column_stack([hdul[cv.GTI_EXT].data["START"], hdul[cv.GTI_EXT].data["STOP"]])
            h, ev_t = hdul[cv.EVENTS_EXT].header, hdul[cv.EVENTS_EXT].data["TIME"]
        # the hole: between the last sample before the gap and the first after it
        holes = list(zip(gti[:-1, 1], gti[1:, 0], strict=True))
        assert any(a <= t0 + GAP[0] + 1.0 and b >= t0 + GAP[1] - 1.0 for a, b in holes), holes
        in_hole = (ev_t > t0 + GAP[0]) & (ev_t < t0 + GAP[1] - 1.0)
        assert not in_hole.any()
        mine = cmos == cv.cmos_index(name)
        # nothing lost silently: kept + dropped = every event this detector delivered
        assert len(ev_t) + h["NGTIDROP"] == int(mine.sum())
        assert h["NGTIDROP"] > 0
        assert h["EXPOSURE"] == pytest.approx(float(np.sum(gti[:, 1] - gti[:, 0])))
        assert 1200.0 - h["EXPOSURE"] >= GAP[1] - GAP[0] - 2.0
    expmap = run["results"]["expmap"]
    with fits.open(Path(expmap.uri.removeprefix("file://"))) as hdul:
        assert float(hdul[0].data.max()) == pytest.approx(h["EXPOSURE"], abs=0.01)
