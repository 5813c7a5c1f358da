"""Archive event lists of real missions read by their headers, checked against stingray's own
reading of the same files (``stingray.EventList.read`` and ``Lightcurve.make_lightcurve``), and
unusual or bad files (``xray_ep.evtfile``, ``xray_ep.archive``).

Tolerances, with what was measured when they were set:

* event times: the same events, times within 1 us of stingray's (TIMEZERO and TIMEPIXR applied
  alike) [identical: 0.0 s on all six files];
* GTIs: the same intervals within half a frame time TIMEDEL, at most 0.1 ms [largest 61 us, RXTE
  xte_test: stingray also moves the GTI by the TIMEPIXR half-frame, we move only event stamps];
* light curve of the field (every event): per-bin counts equal to stingray's wherever a bin lies
  wholly in the good time, count rates within 1e-6 (FITS single precision) [equal].
"""

from __future__ import annotations

import gzip
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import skyweave
from skyweave import ActivityContext, Product
from tests.pipelines.xray.realdata import NICER_FILES, nicer_file, stingray_file
from xray_ep.archive import plan_for
from xray_ep.evtfile import read_event_file
from xray_ep.l3_products import light_curve, spectrum

stingray = pytest.importorskip("stingray", reason="pip install -e 'pipelines/xray_ep[test]'")

STINGRAY_FILES = ("chandra_test.fits", "xte_test.evt.gz", "xte_gx_test.evt.gz")
TIME_TOL_S = 1e-6
GTI_TOL_S = 1e-4


def real_file(name: str) -> Path:
    return nicer_file(name) if name in NICER_FILES else stingray_file(name)


def stingray_events(path: Path) -> stingray.EventList:
    with warnings.catch_warnings():  # stingray warns (e.g. "HDU EVENTS not found": RXTE's XTE_SE)
        warnings.simplefilter("ignore")
        return stingray.EventList.read(str(path), fmt="hea")


@pytest.mark.parametrize("name", [*STINGRAY_FILES, "xmm_test.fits", *NICER_FILES])
def test_times_and_gtis_agree_with_stingray(name: str) -> None:
    path = real_file(name)
    ours = read_event_file(path)
    theirs = stingray_events(path)
    assert ours.time.size == len(theirs.time)
    assert np.max(np.abs(ours.time - np.asarray(theirs.time, float))) <= TIME_TOL_S
    gti = np.asarray(theirs.gti, float)
    assert ours.gti.shape == gti.shape
    half_frame = 0.5 * float(ours.header.get("TIMEDEL", 0.0))
    assert np.max(np.abs(ours.gti - gti)) <= min(max(half_frame, TIME_TOL_S), GTI_TOL_S)
    assert float(ours.header["MJDREF"]) == pytest.approx(float(theirs.mjdref), abs=1e-12)


@pytest.mark.parametrize("name", [*STINGRAY_FILES, *NICER_FILES])
def test_field_light_curve_agrees_with_stingray(name: str, activity: ActivityContext) -> None:
    path = real_file(name)
    lc = light_curve(Product(path, type="xray.events"), {"id": 1, "region": "field", "name": "field"})
    with fits.open(lc.local_path) as hdul:
        rate = hdul["RATE"]
        t, counts, r, frac = (np.asarray(rate.data[c], float) for c in ("TIME", "COUNTS", "RATE", "FRACEXP"))
        dt, deadc = float(rate.header["TIMEDEL"]), float(rate.header["DEADC"])
        assert rate.header["HDUCLAS2"] == "TOTAL" and np.all(rate.data["BACKV"] == 0)
        assert hdul["GTI"].data.shape[0] == len(read_event_file(path).gti)
    ev = stingray_events(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stingray.Lightcurve.make_lightcurve(ev.time, dt=dt, tstart=t[0] - dt / 2, tseg=t.size * dt,
                                                  gti=ev.gti)
    full = frac > 1 - 1e-9
    assert full.sum() >= 3
    index = np.searchsorted(np.asarray(ref.time, float), t[full] - 1e-6 * dt)
    matched = index < len(ref.time)
    matched[matched] &= np.abs(np.asarray(ref.time, float)[index[matched]] - t[full][matched]) < 1e-6 * dt
    assert matched.mean() > 0.9, "stingray keeps the bins wholly inside its GTIs"
    assert np.array_equal(counts[full][matched], np.asarray(ref.counts)[index[matched]])
    assert np.allclose(r[full][matched] * deadc, np.asarray(ref.countrate)[index[matched]], rtol=1e-6)


def test_rxte_spectrum_uses_pha_channels(activity: ActivityContext) -> None:
    path = stingray_file("xte_test.evt.gz")
    spec = spectrum(Product(path, type="xray.events"), {"id": 1, "region": "field"})
    with fits.open(spec.local_path) as hdul:
        sp = hdul["SPECTRUM"]
        assert sp.header["CHANTYPE"] == "PHA" and sp.header["DETCHANS"] == 64  # TLMIN..TLMAX 0..63
        assert int(sp.data["COUNTS"].sum()) == 1000
        assert "BACKGROUND" not in hdul  # a field has no local background


# -- what each mission's file allows, read from its headers ----------------------------------------

@pytest.mark.parametrize(("name", "imaging", "telescope", "timeref"), [
    ("chandra_test.fits", True, "CHANDRA", "LOCAL"),
    ("xte_test.evt.gz", False, "XTE", "LOCAL"),
    ("xte_gx_test.evt.gz", False, "XTE", "SOLARSYSTEM"),
    ("ngc300nicer_bary.evt", False, "NICER", "SOLARSYSTEM"),
    ("sgr1830kgfilt.evt", False, "NICER", "LOCAL"),
])
def test_plan_follows_the_headers(name: str, imaging: bool, telescope: str, timeref: str) -> None:
    plan = plan_for(read_event_file(real_file(name)))
    assert plan["telescope"] == telescope and plan["imaging"] is imaging and plan["timeref"] == timeref
    assert plan["exposure_map"] is False
    assert "aspect history" in plan["skipped"]["exposure_map"]
    if imaging:
        assert set(plan["skipped"]) == {"exposure_map"} and plan["binsize"] >= 1
    else:
        assert "non-imaging" in plan["skipped"]["make_image"]
        assert plan["field_radius_arcmin"] == (3.1 if telescope == "NICER" else 30.0)
        assert plan["pointing"] is not None


def test_plan_of_the_pipelines_own_l2_list_keeps_the_exposure_map(tmp_path: Path) -> None:
    # (the simulator's real L2 list goes through the workflow in test_pipeline.py)
    path = tmp_path / "asp.fits"
    src = stingray_file("chandra_test.fits")
    with fits.open(src) as hdul:
        asp = fits.BinTableHDU.from_columns([fits.Column("TIME", "D", array=[0.0])], name="ASPHIST")
        fits.HDUList([*[h.copy() for h in hdul], asp]).writeto(path)
    plan = plan_for(read_event_file(path))
    assert plan["imaging"] and plan["exposure_map"] and plan["skipped"] == {}


# -- unusual and bad files -------------------------------------------------------------------------

def test_a_compressed_event_list_reads_like_the_plain_one(tmp_path: Path) -> None:
    gz = stingray_file("xte_gx_test.evt.gz")
    plain = tmp_path / "xte_gx_test.evt"
    with gzip.open(gz) as f, plain.open("wb") as out:
        shutil.copyfileobj(f, out)
    a, b = read_event_file(gz), read_event_file(plain)
    assert np.array_equal(a.time, b.time) and np.array_equal(a.gti, b.gti)


def test_no_gti_extension_uses_tstart_tstop_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nogti.fits"
    with fits.open(stingray_file("chandra_test.fits")) as hdul:
        fits.HDUList([h.copy() for h in hdul if h.name != "GTI"]).writeto(path)
    ev = read_event_file(path)
    assert ev.gti.tolist() == [[ev.header["TSTART"], ev.header["TSTOP"]]]
    plan = plan_for(ev)
    assert plan["gti"]["source"].startswith("none") and any("no GTI" in n for n in plan["notes"])


@pytest.mark.parametrize("name", ["nomission.evt", "xmm_test.fits"])  # TIME and PI (and CCDNR, PHA) only
def test_no_sky_columns_skips_imaging_with_the_reason(name: str) -> None:
    plan = plan_for(read_event_file(stingray_file(name)))
    assert plan["imaging"] is False
    assert "no sky pixel columns X/Y" in plan["skipped"]["make_image"]


def test_sky_columns_without_a_celestial_wcs_are_not_imaged(tmp_path: Path) -> None:
    path = tmp_path / "nowcs.fits"
    with fits.open(stingray_file("chandra_test.fits")) as hdul:
        for key in ("TCTYP3", "TCTYP4"):
            del hdul["EVENTS"].header[key]
        hdul.writeto(path)
    assert plan_for(read_event_file(path))["imaging"] is False


@pytest.mark.parametrize(("make", "message"), [
    ("image", "is an image (32x16 pixels in the primary HDU), not an event list"),
    ("lightcurve", "is a light curve (extension RATE), not an event list"),
    ("truncated", "cannot read the event list"),
    ("text", "is not a readable FITS file"),
    ("no_gti_time", "leave no good time"),
])
def test_bad_files_fail_saying_what_they_are(make: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / f"{make}.fits"
    if make == "image":
        fits.PrimaryHDU(np.zeros((16, 32), np.int32)).writeto(path)
    elif make == "lightcurve":
        shutil.copyfile(stingray_file("lcurveA.fits"), path)
    elif make == "truncated":
        data = stingray_file("chandra_test.fits").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif make == "text":
        path.write_text("TIME,PI\n1.0,20\n")
    else:
        with fits.open(stingray_file("chandra_test.fits")) as hdul:
            hdul["GTI"].data["START"] += 1e6
            hdul["GTI"].data["STOP"] += 1e6
            hdul.writeto(path)
    with pytest.raises(skyweave.Fatal, match=re.escape(message)):
        read_event_file(path)
