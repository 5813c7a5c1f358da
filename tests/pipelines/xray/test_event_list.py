"""The ``event_list`` workflow through skyweave (local executor) on real mission files, as a user
runs it (``skyweave run xray_ep.workflow:event_list -p events=FILE``), and on an RXTE list with a
burst added, which must raise a VOEvent from a satellite.

Catalogue position (ICRS): M82 X-1 = CXOU J095550.2+694047, RA 09h55m50.2s, Dec +69d40m46.7s
(Kaaret et al. 2001, MNRAS 321, L29).  Tolerance 2" (ACIS on-axis PSF ~0.5", catalogue quoted to
~1", ACIS absolute astrometry ~0.8" at 90 %).  Measured: the brightest source 0.48" from it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import voeventparse as vp
from astropy.coordinates import SkyCoord
from astropy.io import fits

from skyweave import Client
from tests.pipelines.xray.realdata import nicer_file, stingray_file
from xray_ep.evtfile import in_gti, read_event_file
from xray_ep.workflow import event_list

M82_X1 = SkyCoord("09h55m50.2s", "+69d40m46.7s", frame="icrs")
TOLERANCE_ARCSEC = 2.0
BURST_EVENTS, BURST_START, BURST_DECAY_S = 600, 500.0, 8.0
"""The burst added to the RXTE list: 600 events, exponential decay of 8 s, 500 s into the GTI (a
type I X-ray burst of 4U 1636-53 is ~10x brighter; this one is modest, ~40 ct/s at peak over
the ~1 ct/s the file has)."""


def with_burst(tmp: Path) -> Path:
    """``xte_test.evt.gz`` with a burst added (times before TIMEZERO, as in the file)."""
    out = tmp / "xte_burst.evt"
    with fits.open(stingray_file("xte_test.evt.gz")) as hdul:
        events = hdul[1]
        t0 = float(hdul["GTI"].data["Start"][0])
        rng = np.random.default_rng(1636)
        extra = np.sort(t0 + BURST_START + rng.exponential(BURST_DECAY_S, BURST_EVENTS))
        rows = np.concatenate([events.data, np.repeat(events.data[:1], BURST_EVENTS)])
        rows["TIME"][-BURST_EVENTS:] = extra
        rows = rows[np.argsort(rows["TIME"], kind="stable")]
        hdul[1] = fits.BinTableHDU(rows, header=events.header, name=events.name)
        hdul.writeto(out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("evl")
    files = {"chandra": stingray_file("chandra_test.fits"), "rxte": stingray_file("xte_test.evt.gz"),
             "burst": with_burst(base)}
    with contextlib.suppress(pytest.skip.Exception):  # PINT's NICER files not fetched: run the others
        files["nicer"] = nicer_file("ngc300nicer_bary.evt")
    out: dict[str, Any] = {"files": files}
    with Client(str(base / "st"), workers=2) as client:
        handles = {k: client.submit(event_list, {"events": str(p)}) for k, p in files.items()}
        for key, handle in handles.items():
            handle.wait(timeout=240)
            assert handle.status == "succeeded", handle.summary()
            out[key] = {"results": handle.results(), "activities": handle.activities()}
    return out


def skipped(run: dict[str, Any]) -> dict[str, str]:
    return {a.task_name: a.error["message"] for a in run["activities"] if a.state == "skipped"}


def test_chandra_brightest_source_is_m82_x1_and_no_exposure_map(runs: dict[str, Any]) -> None:
    run = runs["chandra"]
    res = run["results"]
    assert res["plan"]["telescope"] == "CHANDRA" and res["plan"]["instrument"] == "ACIS"
    assert "aspect history" in res["skipped"]["exposure_map"] and set(res["skipped"]) == {"exposure_map"}
    assert skipped(run)["exposure_map"] == "its condition describe_events['exposure_map'] was false"
    assert res["expmap"] is None
    assert res["image"] is not None and len(res["sources"]) >= 3
    brightest = max(res["sources"], key=lambda s: s["net_counts"])
    sep = SkyCoord(brightest["ra"], brightest["dec"], unit="deg").separation(M82_X1).arcsec
    assert sep < TOLERANCE_ARCSEC, sep
    assert len(res["light_curves"]) == len(res["spectra"]) == len(res["sources"])
    assert res["alerts"] == [] and not any(t["is_transient"] for t in res["tests"])


@pytest.mark.parametrize("key", ["rxte", "nicer"])
def test_non_imaging_lists_skip_imaging_with_the_reason(runs: dict[str, Any], key: str) -> None:
    if key not in runs:
        pytest.skip("PINT's NICER event lists are not fetched (see realdata.py)")
    run = runs[key]
    res = run["results"]
    assert {"make_image", "exposure_map", "detect_sources"} <= set(skipped(run))
    assert skipped(run)["make_image"] == "its condition describe_events['imaging'] was false"
    assert skipped(run)["detect_sources"] == "its input from make_image was skipped"
    assert "non-imaging" in res["skipped"]["make_image"]
    (source,) = res["sources"]
    assert source["region"] == "field"
    assert (source["ra"], source["dec"]) == pytest.approx(
        (res["plan"]["pointing"]["ra"], res["plan"]["pointing"]["dec"]))
    (lc,) = res["light_curves"]
    with fits.open(lc.local_path) as hdul:
        assert hdul["RATE"].header["TELESCOP"] == res["plan"]["telescope"]
        ev = read_event_file(runs["files"][key])  # the events in the good time, all of them
        assert int(hdul["RATE"].data["COUNTS"].sum()) == int(in_gti(ev.time, ev.gti).sum())
    assert res["alerts"] == []


def test_a_burst_in_an_rxte_list_raises_a_voevent_from_earth_orbit(runs: dict[str, Any]) -> None:
    res = runs["burst"]["results"]
    (test,) = res["tests"]
    assert test["is_transient"] and test["significance"] > 5
    start = float(read_event_file(runs["files"]["burst"]).gti[0, 0])  # TIMEZERO applied
    assert start + BURST_START - 5 <= test["peak_time"] <= start + BURST_START + 5 * BURST_DECAY_S
    (alert,) = res["alerts"]
    with alert.local_path.open("rb") as f:
        v = vp.load(f)
    assert vp.valid_as_v2_0(v)
    assert v.WhereWhen.ObsDataLocation.ObservatoryLocation.attrib["id"] == "GEOLUN"
    system = v.WhereWhen.ObsDataLocation.ObservationLocation.AstroCoordSystem.attrib["id"]
    assert system == "UTC-ICRS-GEO"  # TIMEREF = 'LOCAL': not barycentred
    params = vp.get_grouped_params(v)["transient"]
    assert params["telescope"]["value"] == "XTE" and params["instrument"]["value"] == "PCA"
    pos = vp.get_event_position(v)
    assert (pos.ra, pos.dec) == pytest.approx((res["plan"]["pointing"]["ra"], res["plan"]["pointing"]["dec"]))
    assert pos.err == pytest.approx(np.hypot(30 * 60, 10) / 3600, rel=1e-3)  # the PCA's field, 30'
