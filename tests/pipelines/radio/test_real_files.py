"""Real files bundled with pyuvdata 3.2.3 (none of them made here), through the radio pipeline.

Known values come from the files (as pyuvdata reads them), from astropy, from pyuvdata's own
rephasing, and from the sky: M87's parsec-scale jet points West-North-West, and 3C286 sits at
13h31m08.288s +30d30m32.96s.  See the survey table in pipelines/radio_nenufar/README.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from radio_nenufar import conventions as cv
from radio_nenufar.calibrate import solve
from radio_nenufar.closure import MIN_Z, bispectrum_z
from radio_nenufar.image import image_data
from radio_nenufar.ingest import import_uvfits, import_visibilities, phase_centre_model, point_model, to_vis
from radio_nenufar.survey import subband_data
from radio_nenufar.workflow import observation
from skyweave import ActivityContext, Client, Fatal, Product

pyuvdata = pytest.importorskip("pyuvdata")
from pyuvdata import UVData  # noqa: E402

DATA = Path(pyuvdata.__file__).parent / "data"
M87 = (187.70593075, 12.39112331)
"""M87 (1228+126) core, ICRF3 (deg)."""
C286 = (15 * (13 + 31 / 60 + 8.288 / 3600), 30 + 30 / 60 + 32.96 / 3600)
"""3C286 (deg), 13h31m08.288s +30d30m32.96s."""
M87_JET_PA_DEG = -72.0
"""Position angle (East of North) of M87's parsec-scale jet at 8-15 GHz (MOJAVE, ~ -70 deg)."""
JET_PA_TOL_DEG = 25.0
"""Measured: -70 deg on the merged image (-81 / -77 on each window's); a point-mirrored image (the
pipeline before the sign fix) gives +98 / +102."""
POS_TOL_BEAM = 0.25
"""Brightest pixel within 0.25 restoring-beam FWHM of the known position (measured: 0.03 beam for
M87, 0 pixels for the EVLA calibrator)."""


def _sep_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    return float(np.hypot((ra1 - ra2) * np.cos(np.radians(dec2)), dec1 - dec2))


def _read(name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return UVData.from_file(str(DATA / name))


def test_hera_drift_scan_uvh5_summary_matches_pyuvdata(activity: ActivityContext) -> None:
    """A zenith drift scan (uvh5, unprojected): the ingest summary is what pyuvdata reports, and the
    data are phased to the zenith's ICRS position at the middle of the scan (astropy)."""
    from astropy import units as u
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    name = "zen.2458098.45361.HH_downselected.uvh5"
    uv = _read(name)
    raw = import_visibilities(path=str(DATA / name), obs_id="hera")
    s = raw.attributes
    cross = uv.ant_1_array != uv.ant_2_array
    n_bl_cross = len({(int(a), int(b)) for a, b in zip(uv.ant_1_array[cross], uv.ant_2_array[cross],
                                                        strict=True)})
    assert (s["n_ant"], s["n_baselines"], s["n_chan"], s["n_times"]) == (uv.Nants_data, n_bl_cross, uv.Nfreqs,
                                                                          uv.Ntimes) == (8, 28, 64, 10)
    assert s["freq_hz"] == pytest.approx(float(np.mean(uv.freq_array)))
    assert s["polarizations"] == ["XX", "YY"] and s["n_gain_ant"] == 16 and s["n_subbands"] == 1
    assert s["telescope"] == "HERA" and s["dish_m"] == 14.0 and "drift-scan" in s["rephased"]
    tmid = Time(float(np.median(np.unique(uv.time_array))), format="jd")
    zen = SkyCoord(az=0 * u.deg, alt=90 * u.deg, frame=AltAz(obstime=tmid, location=uv.telescope.location)).icrs
    assert _sep_deg(s["ra_deg"], s["dec_deg"], zen.ra.deg, zen.dec.deg) * 60 < 1.0
    data = cv.read_vis(raw.local_path)
    assert data["vis"].shape == (2 * n_bl_cross * uv.Ntimes, 64) and np.isfinite(data["dish_m"])
    # one 100-198 MHz window split into sub-bands of 16 channels: four, in frequency order
    split = import_visibilities(path=str(DATA / name), obs_id="hera16", chans_per_subband=16)
    sub = cv.read_vis(split.local_path)
    assert split.attributes["n_subbands"] == 4 and np.bincount(sub["subband"]).tolist() == [16] * 4
    assert np.all(np.diff([sub["freq_hz"][sub["subband"] == k].mean() for k in range(4)]) > 0)


HERA_TEXT_AZ = np.array([
    -254.055, -248.199, -236.310, -225.000, -206.565, -153.435, -123.690, -111.801, -105.945, -261.870,
    -258.690, -251.565, -135.000, -116.565, -101.310, -98.130, 90.000, 90.000, 90.000, 90.000, 90.000,
    -90.000, -90.000, -90.000, -90.000, -90.000, -90.000, 81.870, 78.690, 71.565, -45.000, -71.565,
    -78.690, -81.870, 74.055, 68.199, 56.310, 45.000, 26.565, -26.565, -45.000, -56.310, -71.565])
HERA_TEXT_ZA = np.array([
    7.280, 5.385, 3.606, 2.828, 2.236, 2.236, 3.606, 5.385, 7.280, 7.071, 5.099, 3.162, 1.414, 2.236,
    5.099, 7.071, 7.000, 6.000, 5.000, 3.000, 2.000, 1.000, 2.000, 3.000, 5.000, 6.000, 7.000, 7.071,
    5.099, 3.162, 1.414, 3.162, 5.099, 7.071, 7.280, 5.385, 3.606, 2.828, 2.236, 2.236, 2.828, 3.606, 6.325])
"""pyuvsim's mock catalogue "hera_text" (``create_mock_catalog``): 43 sources of 1 Jy spelling HERA
around the zenith, azimuth (deg, North through East) and zenith angle (deg)."""
LETTER_TOL_ARCMIN = 4.0
"""Every catalogue source within 4' (two 2' pixels) of a source found, after one common shift
(measured: median 0.9', max 2.5'; point-mirrored, as before the sign fix: median 17', max 63')."""


def test_hera_letters_in_their_catalogue_pattern_and_pyuvdata_rephasing_keeps_them(tmp_path: Path) -> None:
    """``ref_1.1_uniform.uvfits`` (pyuvsim, MWA layout, uniform beam) holds pyuvsim's "HERA" letters:
    all 43 sources are found at 1 Jy, in the catalogue's pattern (so East/North are right, not
    mirrored).  The whole pattern sits 4.0 deg North of the file's zenith phase centre (the
    difference between the MWA and HERA site latitudes: the simulation's quirk, not the pipeline's,
    as the second check shows).  The sign convention against pyuvdata itself: the file rephased by
    pyuvdata 3.9 deg South must image its sources at the same sky positions."""
    uv = _read("ref_1.1_uniform.uvfits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.phase(lon=np.radians(60.8), lat=np.radians(-30.77 - 3.9), cat_name="shifted")
        uv.write_uvfits(str(tmp_path / "shifted.uvfits"))
    found, centre = [], []
    for i, f in enumerate((DATA / "ref_1.1_uniform.uvfits", tmp_path / "shifted.uvfits")):
        to_vis(f, tmp_path / f"{i}.npz", f"ref{i}")
        data = cv.read_vis(tmp_path / f"{i}.npz")
        res = image_data(data, None, npix=512, cell_arcmin=2.0, niter=2000 if i == 0 else 800)
        found.append(np.array([(s["ra_deg"], s["dec_deg"], s["flux_jy"]) for s in res["sources"]
                               if s["flux_jy"] > 0.5]))
        centre.append((data["ra_deg"], data["dec_deg"]))
    orig, shifted = found
    assert len(orig) == HERA_TEXT_AZ.size == 43
    assert np.all(np.abs(orig[:, 2] - 1.0) < 0.15)            # 1 Jy each (measured 0.96-1.13)
    # the letters: catalogue offsets (East, North) vs the sources found, up to one common shift
    cat = np.c_[HERA_TEXT_ZA * np.sin(np.radians(HERA_TEXT_AZ)), HERA_TEXT_ZA * np.cos(np.radians(HERA_TEXT_AZ))]
    lm = np.degrees(np.c_[cv.direction_cosines(orig[:, 0], orig[:, 1], *centre[0])])
    shift = lm.mean(axis=0) - cat.mean(axis=0)
    assert shift[1] == pytest.approx(4.0, abs=0.1) and abs(shift[0]) < 0.5   # measured (-0.26, 3.97)
    miss = [np.min(np.hypot(*(lm - shift - c).T)) * 60 for c in cat]
    assert max(miss) < LETTER_TOL_ARCMIN
    # pyuvdata's rephasing moves the phase centre, not the sky
    seps = np.array([min(_sep_deg(r, d, *s[:2]) for s in shifted) for r, d, _ in orig])
    common = seps < 0.5
    assert common.sum() >= 20 and len(shifted) >= 20
    assert np.median(seps[common]) * 60 < 2 * 2.0             # within two 2' pixels (measured 3.6')


def test_simulated_field_through_the_workflow_without_a_calibrator(tmp_path: Path,
                                                                    activity: ActivityContext) -> None:
    """A survey-type field (pyuvsim: 12 HERA dishes, 100 random sources, already calibrated): the
    ingest summary is pyuvdata's, and the workflow without a calibrator model images and merges it
    on the automatic grid (32 px of 40', covering the 14 m dishes' primary beam)."""
    name = "fewant_randsrc_airybeam_Nsrc100_10MHz.uvfits"
    uv = _read(name)
    raw = import_visibilities(path=str(DATA / name), obs_id="fewant")
    s = raw.attributes
    assert (s["n_ant"], s["n_baselines"], s["n_chan"], s["n_times"]) == (uv.Nants_data, uv.Nbls, uv.Nfreqs,
                                                                          uv.Ntimes) == (12, 66, 102, 4)
    assert s["freq_min_hz"] == pytest.approx(float(uv.freq_array.min()))
    assert s["freq_max_hz"] == pytest.approx(float(uv.freq_array.max()))
    assert s["polarizations"] == ["XX"] and s["n_gain_ant"] == 12
    with Client(str(tmp_path / "store"), workers=2) as client:
        vis = client.add_product(raw.local_path, type=cv.VIS_RAW, obs_id="fewant")
        run = client.run(observation, {"vis_id": vis.id}, timeout=240)
        assert run.status == "succeeded", run.summary()
        res = run.results()
    (img_res,) = res["images"]
    assert img_res["npix"] == 32 and img_res["cell_arcmin"] == pytest.approx(40.1, abs=0.2)
    with fits.open(res["merged"]["image"].uri.removeprefix("file://")) as hdul:
        img, hdr = hdul[0].data, hdul[0].header
    assert np.all(np.isfinite(img)) and img.shape == (32, 32)
    assert (hdr["CRVAL1"], hdr["CRVAL2"]) == pytest.approx((s["ra_deg"], s["dec_deg"]))


def test_mojave_two_spectral_windows_through_the_workflow(tmp_path: Path, activity: ActivityContext) -> None:
    """VLBA, M87, two spectral windows: two sub-bands fanned out by the workflow (automatic 0.22 mas
    cells), calibrated against a point at the phase centre; the merged image's brightest pixel is
    on M87's core and its jet points West-North-West."""
    raw = import_visibilities(path=str(DATA / "mojave.uvfits"), obs_id="mojave")
    assert raw.attributes["n_spw"] == 2 and raw.attributes["n_subbands"] == 2
    model = point_model(vis=raw)
    with Client(str(tmp_path / "store"), workers=2) as client:
        vis = client.add_product(raw.local_path, type=cv.VIS_RAW, obs_id="mojave")
        cal = client.add_product(model.local_path, type=cv.SKYMODEL, obs_id="mojave")
        run = client.run(observation, {"vis_id": vis.id, "model_id": cal.id, "niter": 300, "max_selfcal": 1},
                         timeout=240)
        assert run.status == "succeeded", run.summary()
        res = run.results()
    assert [c["ok"] for c in res["calibrations"]] == [True, True]
    assert res["merged"]["subbands"] == [0, 1]
    with fits.open(res["merged"]["image"].uri.removeprefix("file://")) as hdul:
        img, hdr = np.nan_to_num(hdul[0].data), hdul[0].header
    cell_deg = abs(hdr["CDELT2"])
    assert cell_deg * 3.6e6 == pytest.approx(0.222, abs=0.01) and img.shape == (512, 512)
    py, px = np.unravel_index(np.argmax(img), img.shape)
    ra, dec = WCS(hdr).wcs_pix2world([[px, py]], 0)[0]
    assert _sep_deg(ra, dec, *M87) < POS_TOL_BEAM * hdr["BMAJ"]
    # the jet: flux-weighted direction of the positive emission between 1 beam and 13 mas of the core
    y, x = np.mgrid[: img.shape[0], : img.shape[1]]
    r = np.hypot(x - px, y - py) * cell_deg
    jet = (r > hdr["BMAJ"]) & (r < 13 / 3.6e6) & (img > 5 * np.std(img[r > 40 / 3.6e6]))
    east, north = -((x - px)[jet] * img[jet]).sum(), ((y - py)[jet] * img[jet]).sum()
    pa = float(np.degrees(np.arctan2(east, north)))
    assert abs(pa - M87_JET_PA_DEG) < JET_PA_TOL_DEG, pa


def test_evla_through_the_workflow_with_its_defaults(tmp_path: Path, activity: ActivityContext) -> None:
    """What a new user does: import, point model, ``observation`` with every default (automatic grid,
    ``max_resid``).  The file is noise-dominated per sample (90 % of the power), which the model
    check must not mistake for a wrong model; the merged image peaks on the calibrator."""
    raw = import_visibilities(path=str(DATA / "day2_TDEM0003_10s_norx_1src_1spw.uvfits"), obs_id="TDEM0003")
    model = point_model(vis=raw)
    with Client(str(tmp_path / "store"), workers=2) as client:
        vis = client.add_product(raw.local_path, type=cv.VIS_RAW, obs_id="TDEM0003")
        cal = client.add_product(model.local_path, type=cv.SKYMODEL, obs_id="TDEM0003")
        run = client.run(observation, {"vis_id": vis.id, "model_id": cal.id}, timeout=240)
        assert run.status == "succeeded", run.summary()
        res = run.results()
    (c,) = res["calibrations"]
    assert c["ok"] and c["noise_frac"] == pytest.approx(0.9, abs=0.05)      # measured 0.904
    with fits.open(res["merged"]["image"].uri.removeprefix("file://")) as hdul:
        img, hdr = np.nan_to_num(hdul[0].data), hdul[0].header
    py, px = np.unravel_index(np.argmax(img), img.shape)
    ra, dec = WCS(hdr).wcs_pix2world([[px, py]], 0)[0]
    ra0, dec0 = float(raw.attributes["ra_deg"]), float(raw.attributes["dec_deg"])
    assert _sep_deg(ra, dec, ra0, dec0) < POS_TOL_BEAM * hdr["BMAJ"]


def test_evla_calibrator_with_the_automatic_grid(activity: ActivityContext) -> None:
    """The EVLA calibrator file needs no hand-picked cell any more: ~4 pixels per beam, the field
    the 25 m dishes' primary beam at 36 GHz; the calibrator lands on the phase-centre pixel."""
    raw = import_uvfits(path=str(DATA / "day2_TDEM0003_10s_norx_1src_1spw.uvfits"), obs_id="TDEM0003")
    data = cv.read_vis(raw.local_path)
    stat = bispectrum_z(data)
    assert stat["z"] > MIN_Z                                   # measured 22.7
    sol = solve(data, phase_centre_model(data), max_resid=1.0)
    res = image_data(data, sol["gains"], niter=100)
    assert res["npix"] == 208 and res["cell_arcmin"] == pytest.approx(0.0069, abs=2e-4)
    assert 4.0 <= res["beam"][0] <= 9.0                         # measured 6.1 px
    img = res["restored"]
    py, px = np.unravel_index(np.argmax(img), img.shape)
    assert np.hypot(px - 104, py - 104) < POS_TOL_BEAM * res["beam"][0]
    assert img.max() / np.std(res["resid"]) > 50               # measured 174


def test_ata_3c286_without_signal_is_refused_not_focused(activity: ActivityContext) -> None:
    """ATA on 3C286 (uvh5): the phase centre is 3C286, 0.6 % of the samples are corrupt (1e10 to
    1e37) and flagged, nsample is unusable (-1.2e12); the closure phases are pure noise (z ~ 0), so
    no point model is made: calibrating would put a source wherever the model says."""
    name = "ata.LoA.C0352.uvh5_60647_62965_9760406_3c286_0001.uvh5"
    raw = import_visibilities(path=str(DATA / name), obs_id="ata")
    s = raw.attributes
    assert _sep_deg(s["ra_deg"], s["dec_deg"], *C286) * 3600 < 1.0
    assert s["n_corrupt_flagged"] == 78 and s["unit_weights"] and s["n_ant"] == 28
    data = cv.read_vis(raw.local_path)
    assert np.abs(data["vis"][~data["flag"]]).max() < 100      # what is left is not corrupt
    with pytest.raises(Fatal, match="no point-like signal") as err:
        point_model(vis=raw)
    assert err.value.hint
    # the trap it avoids: a point model 0.3 deg off "finds" a source 0.3 deg off
    part = subband_data(data, 0)
    part["subband"] = np.arange(part["freq_hz"].size)
    ch = subband_data(part, 2)
    off = phase_centre_model(ch)
    off["sources"][0]["ra_deg"] += 0.3 / np.cos(np.radians(ch["dec_deg"]))
    res = image_data(ch, solve(ch, off, max_resid=1.0)["gains"], npix=256, cell_arcmin=0.65, niter=100)
    py, px = np.unravel_index(np.argmax(res["restored"]), res["restored"].shape)
    assert abs((px - 128) * 0.65 / 60 + 0.3) < 0.05 and abs(py - 128) < 3


@pytest.mark.parametrize(("name", "match"), [
    ("zen.2456865.60537.xy.uvcRREAAM.uvfits", r"no parallel-hand .*\(the file has XY\)"),
    ("1061316296.uvfits", "every sample is flagged"),
    ("day2_TDEM0003_10s_norx_1src_1spw.ms", "MeasurementSet and Miriad"),
    ("no_such_file.uvh5", "no such file"),
])
def test_files_the_pipeline_cannot_handle_are_refused_clearly(activity: ActivityContext, name: str,
                                                              match: str) -> None:
    with pytest.raises(Fatal, match=match) as err:
        import_visibilities(path=str(DATA / name), obs_id="x")
    assert err.value.hint


def test_several_phase_centres_refused_unless_one_is_named(tmp_path: Path, activity: ActivityContext) -> None:
    """A file with two phase centres (made with pyuvdata from the MOJAVE file) is refused with the
    names; naming one imports only its rows."""
    uv = _read("mojave.uvfits")
    second = uv.time_array > np.median(uv.time_array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.phase(lon=np.radians(M87[0] + 0.01), lat=np.radians(M87[1]), cat_name="offset", select_mask=second)
        uv.write_uvh5(str(tmp_path / "two.uvh5"))
    with pytest.raises(Fatal, match="2 phase centres") as err:
        import_visibilities(path=str(tmp_path / "two.uvh5"), obs_id="two")
    assert "phase_center=" in (err.value.hint or "")
    raw = import_visibilities(path=str(tmp_path / "two.uvh5"), obs_id="two", phase_center="offset")
    assert raw.attributes["phase_center"] == "offset"
    assert raw.attributes["ra_deg"] == pytest.approx(M87[0] + 0.01, abs=1e-6)
    assert raw.attributes["n_times"] == len(np.unique(uv.time_array[second]))


def test_b1950_phase_centre_is_converted_to_icrs(tmp_path: Path, activity: ActivityContext) -> None:
    """The EVLA file rephased by pyuvdata to its calibrator's FK4 B1950 position (0.7 deg from the
    J2000 one): the image's WCS must be ICRS, and the calibrator must land on its J2000 position."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    uv = _read("day2_TDEM0003_10s_norx_1src_1spw.uvfits")
    cat = next(iter(uv.phase_center_catalog.values()))
    j2000 = SkyCoord(cat["cat_lon"] * u.rad, cat["cat_lat"] * u.rad, frame="fk5")
    b1950 = j2000.transform_to("fk4")
    assert j2000.separation(b1950.icrs).deg < 1e-5 and abs(b1950.dec.deg - j2000.dec.deg) > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.phase(lon=b1950.ra.rad, lat=b1950.dec.rad, epoch="B1950", phase_frame="fk4", cat_name="B1950",
                 use_ant_pos=False)
        uv.write_uvh5(str(tmp_path / "b1950.uvh5"))
    raw = import_visibilities(path=str(tmp_path / "b1950.uvh5"), obs_id="b1950")
    assert raw.attributes["phase_frame"] == "fk4"
    ra0, dec0 = j2000.icrs.ra.deg, j2000.icrs.dec.deg
    assert _sep_deg(raw.attributes["ra_deg"], raw.attributes["dec_deg"], ra0, dec0) * 3600 < 0.05
    data = cv.read_vis(raw.local_path)
    res = image_data(data, solve(data, phase_centre_model(data), max_resid=1.0)["gains"], niter=100)
    py, px = np.unravel_index(np.argmax(res["restored"]), res["restored"].shape)
    ra, dec = res["wcs"].wcs_pix2world([[px, py]], 0)[0]
    assert _sep_deg(ra, dec, ra0, dec0) < POS_TOL_BEAM * res["beam"][0] * res["cell_arcmin"] / 60


def test_redundant_array_refused_at_imaging(activity: ActivityContext, tmp_path: Path) -> None:
    """PAPER's redundant-array file has one baseline per redundant group: its PSF has sidelobes as
    high as the main lobe, so no image is made (instead of one whose 'beam' is wider than itself)."""
    to_vis(DATA / "test_redundant_array.uvfits", tmp_path / "r.npz", "red")
    with pytest.raises(Fatal, match="too sparse or too regular"):
        image_data(cv.read_vis(tmp_path / "r.npz"), None)


def test_old_task_name_reads_uvh5(activity: ActivityContext) -> None:
    raw = import_uvfits(path=str(DATA / "zen.2458661.23480.HH.uvh5"), obs_id="hera2")
    assert isinstance(raw, Product) and raw.attributes["n_ant"] == 4 and raw.attributes["n_chan"] == 4
