"""L2 -> L3 stages of the X-ray pipeline on a real Chandra event list and on synthetic lists.

Catalogued positions used to check the real-data detections (ICRS/J2000):

* M82 X-1 = CXOU J095550.2+694047: RA 09h55m50.2s, Dec +69d40m46.7s (1 sigma 0.7"), Chandra HRC,
  Kaaret et al. 2001, MNRAS 321, L29 (arXiv:astro-ph/0009211).
* M82 X-2 (the ULX pulsar) = CXOU J095550.9+694044 = NuSTAR J095551+6940.8: RA 09h55m51.0s,
  Dec +69d40m45s (SIMBAD basic data, quoted to 0.1 s / 1"); Bachetti et al. 2014, Nature 514, 202.

Tolerance 2" (Chandra's on-axis PSF is ~0.5"; the references are quoted to ~1"; ACIS absolute
astrometry ~0.8" at 90%).  Measured offsets at the time of writing: X-1 0.48", X-2 0.66".
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import voeventparse as vp
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

import skyweave
from skyweave import Product
from skyweave.model.context import ActivityContext, reset_context, set_context
from xray_ep.alert import make_voevent
from xray_ep.l3_image import detect_sources, make_image, read_events
from xray_ep.l3_products import light_curve, spectrum, transient_test

M82_X1 = SkyCoord("09h55m50.2s", "+69d40m46.7s", frame="icrs")
M82_X2 = SkyCoord("09h55m51.0s", "+69d40m45s", frame="icrs")
TOLERANCE_ARCSEC = 2.0


def chandra_file() -> Path:
    """stingray's ``tests/data/chandra_test.fits``, located without importing stingray."""
    spec = importlib.util.find_spec("stingray")
    if spec is None or spec.origin is None:
        pytest.skip("stingray==2.3.2 is not installed (it ships the Chandra test event list)")
    return Path(spec.origin).parent / "tests" / "data" / "chandra_test.fits"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ActivityContext]:
    """An activity context so tasks called directly can write outputs under ``tmp_path``."""
    context = ActivityContext(activity_id="act-test0001", run_id="run-test0001", attempt=1,
                              task=make_image.spec, workdir=tmp_path / "work",
                              log=logging.getLogger("test_l3"))
    token = set_context(context)
    yield context
    reset_context(token)


# -- a synthetic L2 event list written to the OGIP conventions ------------------------------------

PIX_ARCSEC = 6.0
NPIX = 512
TSTART, TSTOP = 1.0e8, 1.0e8 + 4000.0


def write_events(path: Path, events: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                 drop: tuple[str, ...] = ()) -> Path:
    """Write ``TIME/X/Y/PI`` with a TAN sky WCS in ``TCTYPn``... keywords, a GTI and OBS_ID."""
    x, y, t, pi = events
    order = np.argsort(t)
    cols = {"TIME": ("D", "s", t), "X": ("E", "pixel", x), "Y": ("E", "pixel", y), "PI": ("J", "chan", pi)}
    cols = {k: v for k, v in cols.items() if k not in drop}
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name, fmt, unit, array=a[order]) for name, (fmt, unit, a) in cols.items()], name="EVENTS")
    h = table.header
    names = list(cols)
    for axis, ctype, crval, cdelt in (("X", "RA---TAN", 150.0, -PIX_ARCSEC / 3600), ("Y", "DEC--TAN", 30.0,
                                                                                     PIX_ARCSEC / 3600)):
        if axis not in names:
            continue
        n = names.index(axis) + 1
        keys = {"TCTYP": ctype, "TCRVL": crval, "TCRPX": NPIX / 2 + 0.5, "TCDLT": cdelt, "TCUNI": "deg",
                "TLMIN": 0.5, "TLMAX": NPIX + 0.5}
        for key, value in keys.items():
            if f"{key}{n}" not in {f"{d}" for d in drop}:
                h[f"{key}{n}"] = value
    if "PI" in names:
        n = names.index("PI") + 1
        h[f"TLMIN{n}"], h[f"TLMAX{n}"] = 1, 1024
    h.update({"OBS_ID": "sim0001", "TSTART": TSTART, "TSTOP": TSTOP, "EXPOSURE": TSTOP - TSTART,
              "MJDREF": 58849.0, "TIMESYS": "TT", "TIMEUNIT": "s", "RADESYS": "ICRS",
              "TELESCOP": "EP-SIM", "INSTRUME": "WXT-SIM", "HDUCLASS": "OGIP", "HDUCLAS1": "EVENTS"})
    for key in drop:
        h.remove(key, ignore_missing=True)
    gti = fits.BinTableHDU.from_columns([fits.Column("START", "D", "s", array=[TSTART]),
                                         fits.Column("STOP", "D", "s", array=[TSTOP])], name="GTI")
    fits.HDUList([fits.PrimaryHDU(), table, gti]).writeto(path, overwrite=True)
    return path


TRUTH: list[dict[str, Any]] = [
    {"x": 150.3, "y": 200.7, "rate": 0.30, "flare": None},
    {"x": 330.6, "y": 140.2, "rate": 0.15, "flare": None},
    {"x": 260.2, "y": 360.9, "rate": 0.05, "flare": {"t": TSTART + 2500.0, "tau": 60.0, "counts": 400}},
]
BACKGROUND_PER_PIX = 0.004  # counts per sky pixel over the observation (~1,000 in the image)
PSF_SIGMA_PIX = 2.5


def synthetic_events(rng: np.random.Generator, sources: list[dict[str, Any]]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat background + Gaussian-PSF point sources; a flare is an exponential decay of extra photons."""
    nb = rng.poisson(BACKGROUND_PER_PIX * NPIX * NPIX)
    xs, ys = [rng.uniform(0.5, NPIX + 0.5, nb)], [rng.uniform(0.5, NPIX + 0.5, nb)]
    ts = [rng.uniform(TSTART, TSTOP, nb)]
    for s in sources:
        n = rng.poisson(s["rate"] * (TSTOP - TSTART))
        t = rng.uniform(TSTART, TSTOP, n)
        if s["flare"]:
            f = s["flare"]
            t = np.concatenate([t, np.minimum(f["t"] + rng.exponential(f["tau"], f["counts"]), TSTOP - 1)])
        xs.append(rng.normal(s["x"], PSF_SIGMA_PIX, t.size))
        ys.append(rng.normal(s["y"], PSF_SIGMA_PIX, t.size))
        ts.append(t)
    x, y, t = np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)
    return x, y, t, rng.integers(30, 600, t.size)


# -- real data: Chandra ACIS, M82 -----------------------------------------------------------------

def test_chandra_m82_sources_land_on_catalogued_ulxs(ctx: ActivityContext) -> None:
    events = Product(chandra_file(), type="ep.l2.events")
    image = make_image(events)
    with fits.open(image.local_path) as hdul:
        header, counts = hdul[0].header, hdul[0].data
        assert counts.sum() == 4612  # every event of the list is in the image
        wcs = WCS(header)
    # the image WCS puts X-1's brightest pixel within 1" of the catalogued position
    j, i = np.unravel_index(np.argmax(counts), counts.shape)
    peak = wcs.pixel_to_world(i, j)
    assert peak.separation(M82_X1).arcsec < 1.0

    sources = detect_sources(image, events)
    assert 3 <= len(sources) <= 50
    by_sig = sorted(sources, key=lambda s: -s["significance"])
    pos = SkyCoord([s["ra"] for s in by_sig], [s["dec"] for s in by_sig], unit="deg")
    x1, x2 = by_sig[0], by_sig[1]  # the two ULXs are the two most significant sources
    sep1 = pos[0].separation(M82_X1).arcsec
    sep2 = pos[1].separation(M82_X2).arcsec
    assert sep1 < TOLERANCE_ARCSEC, sep1
    assert sep2 < TOLERANCE_ARCSEC, sep2
    assert x1["counts"] > 1000 and x2["counts"] > 150
    for s in sources:  # JSON-able, all fields present
        assert {"id", "x", "y", "ra", "dec", "counts", "background", "significance"} <= s.keys()
        assert all(isinstance(s[k], (int, float)) for k in ("x", "y", "ra", "dec", "counts", "background"))
        assert s["significance_post_trials"] >= 5.0

    ev = read_events(events.local_path)
    for s in (x1, x2):
        lc = light_curve(events, s)
        spec = spectrum(events, s)
        result = transient_test(lc)
        in_aperture = int(np.sum((ev.x - s["x"]) ** 2 + (ev.y - s["y"]) ** 2 <= s["aperture_pix"] ** 2))
        with fits.open(lc.local_path) as hdul:
            rate = hdul["RATE"]
            assert rate.header["HDUCLAS1"] == "LIGHTCURVE" and rate.header["TIMEDEL"] > 0
            assert {"TIME", "RATE", "ERROR", "FRACEXP"} <= set(rate.columns.names)
            assert rate.header["OBJECT"] == s["name"] and rate.header["RA_OBJ"] == pytest.approx(s["ra"])
            assert rate.data["COUNTS"].sum() == in_aperture
            assert np.isfinite(rate.data["RATE"]).all()
        with fits.open(spec.local_path) as hdul:
            sp = hdul["SPECTRUM"]
            assert sp.header["HDUCLASS"] == "OGIP" and sp.header["HDUCLAS1"] == "SPECTRUM"
            assert sp.header["DETCHANS"] == 1024 and sp.header["POISSERR"]
            assert sp.header["EXPOSURE"] == pytest.approx(ev.exposure) and sp.header["BACKSCAL"] > 0
            assert sp.data["COUNTS"].sum() == in_aperture == s["counts"]  # counts conserved
        # Kaaret et al. 2001: "no significant short term variability" for X-1; not a transient here
        assert result["is_transient"] is False
        assert result["mean_rate"] == pytest.approx(s["rate"], rel=0.1)


# -- simulated data -------------------------------------------------------------------------------

def test_synthetic_sources_fluxes_and_flare(ctx: ActivityContext, tmp_path: Path) -> None:
    rng = np.random.default_rng(20240501)
    events = Product(write_events(tmp_path / "sim.fits", synthetic_events(rng, TRUTH)), type="ep.l2.events")
    sources = detect_sources(make_image(events), events)
    assert len(sources) == len(TRUTH)
    matched = []
    for truth in TRUTH:
        d = [np.hypot(s["x"] - truth["x"], s["y"] - truth["y"]) for s in sources]
        k = int(np.argmin(d))
        assert d[k] < 1.0, (truth, d[k])  # within 1 pixel of the truth
        matched.append(sources[k])
    # detection apertures are PSF-agnostic (encircled energy < 1), but the same for equal PSFs:
    # the ratio of the steady sources' net rates is within 15 % of the truth (2.0)
    assert matched[0]["rate"] / matched[1]["rate"] == pytest.approx(2.0, rel=0.15)
    # light curves in a 3-sigma PSF aperture (98.9 % encircled): mean net rate within 15 % of truth
    results = [transient_test(light_curve(events, s, radius_pix=3 * PSF_SIGMA_PIX)) for s in matched]
    for truth, r in zip(TRUTH[:2], results[:2], strict=True):
        assert r["mean_rate"] == pytest.approx(truth["rate"], rel=0.15)
    for r in results[:2]:
        assert r["is_transient"] is False and r["significance"] < 3.0
    flare = results[2]
    assert flare["is_transient"] is True and flare["significance"] > 5.0
    assert abs(flare["peak_time"] - TRUTH[2]["flare"]["t"]) < 300.0
    assert flare["peak_rate"] > 5 * flare["mean_rate"]
    alert = make_voevent(matched[2], flare, obs_id="sim0001")
    with alert.local_path.open("rb") as f:
        assert vp.valid_as_v2_0(vp.load(f))


def test_pure_background_detects_nothing_and_raises_no_alert(ctx: ActivityContext, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    events = Product(write_events(tmp_path / "bkg.fits", synthetic_events(rng, [])), type="ep.l2.events")
    assert detect_sources(make_image(events), events) == []
    # a light curve at an arbitrary position is constant: no transient, hence no alert
    result = transient_test(light_curve(events, {"id": 1, "x": 256.0, "y": 256.0, "aperture_pix": 6.0}))
    assert result["is_transient"] is False


# -- VOEvent --------------------------------------------------------------------------------------

def test_voevent_validates_and_round_trips(ctx: ActivityContext) -> None:
    source = {"id": 3, "name": "SWX J100000.0+300000", "ra": 150.01234, "dec": 30.05678,
              "pos_err_arcsec": 1.5, "significance": 22.0}
    test = {"is_transient": True, "significance": 8.25, "peak_time": 1.0e8 + 2500.0,
            "peak_time_utc": "2020-01-01T00:42:49.816", "peak_rate": 3.2, "mean_rate": 0.15}
    product = make_voevent(source, test, obs_id="sim0001")
    assert product.type == "ep.alert.voevent"
    with product.local_path.open("rb") as f:
        v = vp.load(f)
    assert vp.valid_as_v2_0(v)
    assert v.attrib["role"] == "observation"
    # from a satellite in Earth orbit, the IVOA STC library location (VOEvent 2.0, section 3.3.1)
    assert v.WhereWhen.ObsDataLocation.ObservatoryLocation.attrib["id"] == "GEOLUN"
    assert v.WhereWhen.ObsDataLocation.ObservationLocation.AstroCoordSystem.attrib["id"] == "UTC-ICRS-GEO"
    position = vp.get_event_position(v)
    assert position.ra == pytest.approx(150.01234) and position.dec == pytest.approx(30.05678)
    assert position.err * 3600 == pytest.approx(np.hypot(1.5, 10.0), rel=1e-3)
    assert vp.get_event_time_as_utc(v).isoformat().startswith("2020-01-01T00:42:49.816")
    params = vp.get_grouped_params(v)["transient"]
    assert float(params["significance"]["value"]) == pytest.approx(8.25)
    assert params["obs_id"]["value"] == "sim0001"
    assert v.How.Reference.attrib["uri"] == "ivo://skyweave.local/activity?act-test0001"
    assert make_voevent.spec.priority == 10
    override = make_voevent(source, test, obs_id="sim0001", provenance="ivo://example.org/activity?x")
    with override.local_path.open("rb") as f:
        assert vp.load(f).How.Reference.attrib["uri"] == "ivo://example.org/activity?x"


def test_voevent_of_a_barycentred_light_curve_is_in_tdb_at_the_barycentre(ctx: ActivityContext) -> None:
    source = {"id": 1, "region": "field", "name": "NGC_300_ULX1", "ra": 13.770208, "dec": -37.695417,
              "pos_err_arcsec": 186.0}
    test = {"is_transient": True, "significance": 7.0, "peak_time": 129400000.0, "peak_rate": 9.0,
            "mean_rate": 1.5, "peak_time_utc": "2018-02-06T16:25:31.816", "peak_time_tdb": "2018-02-06T16:26:40.999",
            "timeref": "SOLARSYSTEM", "telescope": "NICER", "instrument": "XTI"}
    with make_voevent(source, test, obs_id="1034200101").local_path.open("rb") as f:
        v = vp.load(f)
    assert vp.valid_as_v2_0(v)
    where = v.WhereWhen.ObsDataLocation
    assert where.ObservatoryLocation.attrib["id"] == "GEOLUN"  # NICER is on the ISS
    assert where.ObservationLocation.AstroCoordSystem.attrib["id"] == "TDB-ICRS-BARY"
    assert str(where.ObservationLocation.AstroCoords.Time.TimeInstant.ISOTime).startswith("2018-02-06T16:26:40.999")
    params = vp.get_grouped_params(v)["transient"]
    assert params["telescope"]["value"] == "NICER"


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("drop", "named"), [(("X",), "'X'"), (("Y",), "'Y'"), (("TCRVL2",), "TCRVL2"),
                                             (("TCTYP3",), "TCTYP3")])
def test_missing_columns_or_wcs_keywords_are_fatal(ctx: ActivityContext, tmp_path: Path,
                                                   drop: tuple[str, ...], named: str) -> None:
    rng = np.random.default_rng(1)
    path = write_events(tmp_path / "bad.fits", synthetic_events(rng, TRUTH[:1]), drop=drop)
    with pytest.raises(skyweave.Fatal, match=named):
        make_image(Product(path, type="ep.l2.events"))
