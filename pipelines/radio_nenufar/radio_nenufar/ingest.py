"""Ingest real visibility files (uvfits or uvh5, read with pyuvdata) into the pipeline's format.

pyuvdata is a real dependency of the pipeline (this task), not only of the tests: reading uvfits
(random groups, AIPS tables, phase-centre catalogues) and uvh5 correctly is what pyuvdata is for.
The format is chosen by the file name's extension (``.uvfits``/``.uvf``/``.fits``: uvfits,
``.uvh5``/``.h5``/``.hdf5``: uvh5).  Miriad and MeasurementSet are refused with a clear error: with
astropy 8, pyuvdata's readers for them try to download astropy's site list.

Conversion: autocorrelations dropped; baselines ordered ant1 < ant2 (a row with ant1 > ant2 is
conjugated and its uvw negated); uvw as pyuvdata gives them (``x[ant2] - x[ant1]``, metres, toward
the phase centre); weight = nsample (relative weights: the absolute noise of archival files is not
trusted), 0 where flagged; when no sample has a positive nsample, unit weights.  Also flagged at
ingest (and counted in the summary): zero and non-finite samples, and corrupt ones (amplitude
> ``MAX_AMP_RATIO`` x the median; see ``_check_samples``).

Sign convention: pyuvdata's visibilities are the complex conjugates of this pipeline's
(``conventions``: ``V = sum S exp(-2 pi i (u l + v m + w (n - 1)))`` with ``uvw = x[ant2] - x[ant1]``),
so ``vis = conj(data_array)``.  Measured, not assumed: a file rephased by pyuvdata itself
(``UVData.phase``) 3.9 deg away must image its sources at the same sky positions.  Without the
conjugation, the sources of ``ref_1.1_uniform.uvfits`` moved by 6-8 deg (twice the offset: the image
was point-mirrored through the phase centre); with it they stay within 4' (a pixel at 2').  A source
at the phase centre (the EVLA test file) cannot tell the two apart, which is how this went unseen.

Spectral windows: every spectral window is its own sub-band (sub-band k = the k-th entry of
pyuvdata's ``spw_array``), so a multi-window file fans out into one calibration and image per window.
``chans_per_subband=N`` splits each window into sub-bands of N consecutive channels (one gain
solution each: for wide windows of uncalibrated data, e.g. HERA's 100-198 MHz in one window).

Phase centres
    * one sidereal phase centre: used as is (``cat_lon``/``cat_lat``; for uvfits ``CRVAL6``/``CRVAL7``);
    * several phase centres in one file (a mosaic or a multi-source file): refused (``Fatal``) unless
      ``phase_center`` names the one to import (one image has one phase centre);
    * drift-scan data (pyuvdata ``unprojected``, e.g. HERA's zenith-pointed files, or ``driftscan``
      at a fixed azimuth/elevation): phased with pyuvdata to the ICRS position of that direction at
      the middle of the observation (``phase_to_time`` for the zenith), the standard way to image a
      short drift scan; the summary says so (``rephased``).  Sources move through the field by
      15 deg/h, so only short drift scans image sharply (the summary gives ``time_span_s``);
    * ephemeris (moving-target) and near-field phase centres: refused;
    * the position is converted to ICRS when the file states another frame than ICRS or FK5 J2000
      (e.g. FK4 B1950, ~0.5 deg away; ``_icrs``).

Polarisation (``per_feed``, default True): every parallel hand (RR, LL or XX, YY) becomes its own set
of rows, and each *feed* of an antenna its own gain "antenna" (``ant_names`` ``"ea01/R"``, ...).
R and L (or X and Y) feeds have independent complex gains, so averaging RR and LL into Stokes I
*before* calibration mixes two different gain products per baseline, which no per-antenna gain can
undo (on the EVLA test file the RR and LL phases of a baseline differ by up to 180 deg).  Calibrated
rows image to ``(RR + LL) / 2 = I`` for an unpolarised sky, as the imager averages all rows.
``per_feed=False`` writes one Stokes-I row per baseline (mean of the parallel hands, flagged if any
of them is), the format for data that are already calibrated.  A file holding Stokes I itself (AIPS
code 1, e.g. PAPER's ``test_redundant_array.uvfits``) is taken as one "feed" ``I``.  A file with only
cross hands (XY, YX, RL, LR) or only Q/U/V cannot give Stokes I: refused.

Refused with ``skyweave.Fatal`` (message + hint), never imaged into garbage: a missing file, an
unsupported format, a file pyuvdata cannot read, several phase centres, a moving target, no
parallel hand, every sample flagged (``ignore_flags=True`` images such a file anyway, when the flags
are known to be spurious: e.g. pyuvdata's MWA test files are flagged throughout).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from radio_nenufar import conventions as cv
from radio_nenufar.closure import MIN_Z, bispectrum_z
from skyweave import Fatal, Product, context, task

PARALLEL_HANDS = {-1, -2, -5, -6}  # RR, LL, XX, YY (AIPS codes)
STOKES_I = 1
FEED = {-1: "R", -2: "L", -5: "X", -6: "Y", 1: "I"}
POL_NAME = {1: "I", 2: "Q", 3: "U", 4: "V", -1: "RR", -2: "LL", -3: "RL", -4: "LR", -5: "XX", -6: "YY",
            -7: "XY", -8: "YX"}
MAX_AMP_RATIO = 1e4
"""A sample 10^4 times brighter than the median is not sky (see ``_check_samples``)."""
FILE_TYPES = {".uvfits": "uvfits", ".uvf": "uvfits", ".fits": "uvfits", ".uvh5": "uvh5", ".h5": "uvh5",
              ".hdf5": "uvh5"}
FORMATS_HINT = "give a .uvfits or .uvh5 file (pyuvdata can convert others: UVData.write_uvh5)"


def file_type(path: Path | str) -> str:
    """``"uvfits"`` or ``"uvh5"`` from the file name; ``Fatal`` for anything else."""
    p = Path(path)
    if not p.exists():
        raise Fatal(f"{p}: no such file", hint=FORMATS_HINT)
    if p.is_dir() or p.suffix.lower() in {".ms", ".uv", ".uvc"} or p.name.endswith(".tar.gz"):
        raise Fatal(f"{p.name}: MeasurementSet and Miriad data are not supported (pyuvdata's readers for "
                    "them need network access with astropy 8)", hint=FORMATS_HINT)
    ft = FILE_TYPES.get(p.suffix.lower())
    if ft is None:
        raise Fatal(f"{p.name}: unknown visibility format {p.suffix!r}", hint=FORMATS_HINT)
    return ft


def read_uvdata(path: Path | str) -> Any:
    """The file as a ``pyuvdata.UVData`` (format by extension); ``Fatal`` when it cannot be read."""
    from pyuvdata import UVData

    ft = file_type(path)
    try:
        with warnings.catch_warnings():  # pyuvdata warns about uvw vs antenna positions on real files
            warnings.simplefilter("ignore")
            return UVData.from_file(str(path), file_type=ft)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise Fatal(f"{Path(path).name}: pyuvdata cannot read it as {ft} ({type(exc).__name__}: {exc})",
                    hint=FORMATS_HINT) from exc


def _single_phase_centre(uv: Any, name: str, phase_center: str | None) -> tuple[dict[str, Any], str]:
    """Select / rephase ``uv`` (in place) to one sidereal phase centre; returns its catalogue entry
    and a note on what was done (empty when nothing)."""
    ids = [int(i) for i in np.unique(uv.phase_center_id_array)]
    names = {i: str(uv.phase_center_catalog[i]["cat_name"]) for i in ids}
    if phase_center is not None:
        pick = [i for i in ids if names[i] == phase_center]
        if not pick:
            raise Fatal(f"{name}: no phase centre named {phase_center!r} in the data",
                        hint=f"phase centres: {', '.join(repr(n) for n in names.values())}")
        if len(ids) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                uv.select(phase_center_ids=pick)
        ids = pick
    elif len(ids) > 1:
        raise Fatal(f"{name}: {len(ids)} phase centres in one file "
                    f"({', '.join(repr(n) for n in names.values())}); one image has one phase centre",
                    hint="import one of them: import_visibilities(..., phase_center=NAME)")
    cat = uv.phase_center_catalog[ids[0]]
    kind = str(cat["cat_type"])
    if kind == "sidereal":
        return cat, ""
    if kind in ("unprojected", "driftscan"):
        from astropy.time import Time

        times = np.unique(uv.time_array)
        tmid = Time(float(np.median(times)), format="jd")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "unprojected":
                uv.phase_to_time(tmid)
                what = "the zenith"
            else:
                ra, dec = _altaz_to_icrs(uv, float(cat["cat_lon"]), float(cat["cat_lat"]), tmid)
                uv.phase(lon=ra, lat=dec, cat_name=f"{cat['cat_name']} at {tmid.isot}", cat_type="sidereal")
                what = f"az/el {np.degrees(cat['cat_lon']):.2f}/{np.degrees(cat['cat_lat']):.2f} deg"
        new = uv.phase_center_catalog[int(np.unique(uv.phase_center_id_array)[0])]
        return new, (f"{kind} (drift-scan) data phased to {what} at the mid-time {tmid.isot} "
                     f"(RA {np.degrees(new['cat_lon']):.4f}, Dec {np.degrees(new['cat_lat']):.4f} deg)")
    raise Fatal(f"{name}: phase centre {names[ids[0]]!r} is of type {kind!r} (a moving or near-field "
                "target), which this pipeline does not image",
                hint="rephase it to a fixed sky position first (pyuvdata: UVData.phase(lon=..., lat=...))")


def _icrs(cat: dict[str, Any]) -> tuple[float, float]:
    """The phase centre in ICRS degrees.  ``icrs`` and ``fk5`` (J2000) are taken as they are (they
    differ by < 25 mas, the frame bias; the existing tests compare with the uvfits header); any other
    frame (``fk4`` B1950, ``gcrs``, ...) is converted with astropy: B1950 is ~0.5 deg away."""
    lon, lat = float(np.degrees(cat["cat_lon"])), float(np.degrees(cat["cat_lat"]))
    frame = str(cat.get("cat_frame") or "icrs").lower()
    if frame in ("icrs", "fk5"):
        return lon, lat
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    epoch = cat.get("cat_epoch")
    kwargs: dict[str, Any] = {}
    if frame == "fk4" and epoch is not None:
        kwargs["equinox"] = Time(float(epoch), format="byear")
    c = SkyCoord(lon * u.deg, lat * u.deg, frame=frame, **kwargs).icrs
    return float(c.ra.deg), float(c.dec.deg)


def _altaz_to_icrs(uv: Any, az: float, alt: float, time: Any) -> tuple[float, float]:
    from astropy import units as u
    from astropy.coordinates import AltAz, SkyCoord

    loc = uv.telescope.location
    c = SkyCoord(az=az * u.rad, alt=alt * u.rad, frame=AltAz(obstime=time, location=loc)).icrs
    return float(c.ra.rad), float(c.dec.rad)


def _intensity_pols(pol_codes: list[int], name: str) -> list[int]:
    """Indices of the parallel hands (else of Stokes I); ``Fatal`` when there is neither."""
    pols = [i for i, p in enumerate(pol_codes) if p in PARALLEL_HANDS]
    if not pols:
        pols = [i for i, p in enumerate(pol_codes) if p == STOKES_I]
    if not pols:
        have = ", ".join(POL_NAME.get(p, str(p)) for p in pol_codes)
        raise Fatal(f"{name}: no parallel-hand (XX/YY, RR/LL) or Stokes I data to form Stokes I "
                    f"(the file has {have})",
                    hint="this pipeline images total intensity; give a file with parallel-hand polarisations")
    return pols


def _subbands(uv: Any, nchan: int, chans_per_subband: int | None = None) -> np.ndarray:
    """The sub-band of every channel: the index of its spectral window in ``spw_array`` or, with
    ``chans_per_subband``, of its group of that many consecutive channels within its window."""
    spw_of_chan = (np.asarray(uv.flex_spw_id_array).ravel() if uv.flex_spw_id_array is not None
                   else np.full(nchan, int(uv.spw_array[0])))
    spw_index = {int(s): k for k, s in enumerate(uv.spw_array)}
    spw = np.array([spw_index[int(s)] for s in spw_of_chan], int)
    if chans_per_subband is None:
        return spw
    if chans_per_subband < 1:
        raise Fatal(f"chans_per_subband must be >= 1 (got {chans_per_subband})",
                    hint="None: one sub-band per spectral window")
    out, nxt = np.zeros(nchan, int), 0
    for k in range(len(spw_index)):
        idx = np.flatnonzero(spw == k)
        groups = np.arange(idx.size) // chans_per_subband
        out[idx] = nxt + groups
        nxt += int(groups.max()) + 1 if idx.size else 0
    return out


def _check_samples(data: np.ndarray, flags: np.ndarray, nsamp: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Flag what no instrument measures and fix unusable weights; returns (flags, nsample, counts).

    * non-finite and exactly-zero samples (dropped data) are flagged;
    * samples brighter than ``MAX_AMP_RATIO`` times the median amplitude of the other unflagged
      samples are flagged as corrupt (the ATA 3C286 test files hold 0.6 % and 3 % of samples at
      1e10 to 1e37 next to a median of 7-10: uninitialised correlator memory);
    * when no unflagged sample has a positive nsample (the ATA files state -1.2e12 everywhere, a
      HERA template 0), nsample carries no information: every unflagged sample gets weight 1.
    """
    amp = np.abs(data)
    bad_value = ~np.isfinite(amp) | (amp == 0)
    ok = ~flags & ~bad_value
    med = float(np.median(amp[ok])) if ok.any() else 0.0
    corrupt = ok & (amp > MAX_AMP_RATIO * med)
    unit = not (ok & np.isfinite(nsamp) & (nsamp > 0)).any()
    if unit:
        nsamp = np.ones_like(nsamp)
    new_flags = flags | bad_value | corrupt
    return new_flags, nsamp, {"n_zero_or_nonfinite_flagged": int((bad_value & ~flags).sum()),
                              "n_corrupt_flagged": int(corrupt.sum()), "unit_weights": unit}


def dish_diameter(uv: Any) -> float:
    """The antennas' diameter (m) as the file states it, NaN when it does not (or states 0)."""
    d = uv.telescope.antenna_diameters
    if d is None:
        return float("nan")
    d = np.asarray(d, float)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else float("nan")


def to_vis(src: Path | str, dest: Path, obs_id: str, *, per_feed: bool = True,
           phase_center: str | None = None, ignore_flags: bool = False,
           chans_per_subband: int | None = None) -> dict[str, Any]:
    """Convert one uvfits/uvh5 file; returns a summary (rows, channels, frequency, antennas, gain
    "antennas" = feeds when ``per_feed``, baselines, times, spectral windows, phase centre, ...)."""
    name = Path(src).name
    uv = read_uvdata(src)
    cat, rephased = _single_phase_centre(uv, name, phase_center)
    pol_codes = [int(p) for p in uv.polarization_array]
    pols = _intensity_pols(pol_codes, name)
    cross = uv.ant_1_array != uv.ant_2_array
    if not cross.any():
        raise Fatal(f"{name}: only autocorrelations, no baseline to image", hint=FORMATS_HINT)
    a1, a2, uvw = uv.ant_1_array[cross], uv.ant_2_array[cross], np.array(uv.uvw_array[cross], float)
    swap = a1 > a2
    uvw[swap] = -uvw[swap]
    a1, a2 = np.where(swap, a2, a1), np.where(swap, a1, a2)
    ants, inv = np.unique(np.r_[a1, a2], return_inverse=True)
    i1, i2 = inv[: a1.size], inv[a1.size:]
    numbers = list(uv.telescope.antenna_numbers)
    names = [str(uv.telescope.antenna_names[numbers.index(a)]) for a in ants]
    # pyuvdata's visibilities are the complex conjugates of this pipeline's for the same uvw (module
    # docstring, "Sign convention"); a swapped row is conjugated once more (its baseline reversed)
    data = np.conj(uv.data_array[cross][:, :, pols])
    data[swap] = np.conj(data[swap])
    flags = uv.flag_array[cross][:, :, pols]
    nsamp = np.asarray(uv.nsample_array[cross][:, :, pols], float)
    flagged_in_file = float(flags.mean())
    if ignore_flags:
        flags = np.zeros_like(flags)
    if flags.all():
        raise Fatal(f"{name}: every sample is flagged in the file: nothing to calibrate or image",
                    hint="if the flags are known to be spurious, import with ignore_flags=True")
    flags, nsamp, checks = _check_samples(data, flags, nsamp)
    if per_feed or len(pols) == 1:
        n_pol = len(pols)
        feeds = [FEED[pol_codes[i]] for i in pols]
        vis = np.concatenate([data[:, :, k] for k in range(n_pol)])
        flag = np.concatenate([flags[:, :, k] for k in range(n_pol)])
        weight = np.where(flag, 0.0, np.concatenate([nsamp[:, :, k] for k in range(n_pol)]))
        ant1 = np.concatenate([i1 + k * ants.size for k in range(n_pol)])
        ant2 = np.concatenate([i2 + k * ants.size for k in range(n_pol)])
        uvw, time = np.tile(uvw, (n_pol, 1)), np.tile(uv.time_array[cross], n_pol)
        names = [f"{n}/{f}" for f in feeds for n in names]
    else:
        flag = np.asarray(flags.any(axis=-1))
        vis = data.mean(axis=-1)
        weight = np.where(flag, 0.0, nsamp.mean(axis=-1))
        ant1, ant2, time = i1, i2, uv.time_array[cross]
    freq = np.asarray(uv.freq_array, float).ravel()
    subband = _subbands(uv, freq.size, chans_per_subband)
    t0 = float(uv.time_array.min())
    dish = dish_diameter(uv)
    ra, dec = _icrs(cat)
    telescope = str(uv.telescope.name)
    cv.write_vis(dest, {"vis": vis, "flag": flag, "weight": weight, "uvw_m": uvw,
                        "ant1": ant1, "ant2": ant2, "time_s": (time - t0) * 86400,
                        "freq_hz": freq, "subband": subband, "ant_names": names,
                        "ra_deg": ra, "dec_deg": dec, "t0_mjd": t0 - 2400000.5, "n_ant": len(names),
                        "obs_id": obs_id, "telescope": telescope, "dish_m": dish})
    bl = np.hypot(uvw[:, 0], uvw[:, 1])
    return {"n_rows": int(vis.shape[0]), "n_chan": int(freq.size), "freq_hz": float(freq.mean()),
            "freq_min_hz": float(freq.min()), "freq_max_hz": float(freq.max()),
            "n_ant": int(ants.size), "n_gain_ant": len(names),
            "n_baselines": int(np.unique(np.c_[a1, a2], axis=0).shape[0]),
            "n_times": int(np.unique(uv.time_array).size),
            "time_span_s": float((uv.time_array.max() - t0) * 86400),
            "n_spw": len(uv.spw_array), "n_subbands": int(np.unique(subband).size),
            "polarizations": [POL_NAME.get(pol_codes[i], str(pol_codes[i])) for i in pols],
            "telescope": telescope, "phase_center": str(cat["cat_name"]), "ra_deg": ra, "dec_deg": dec,
            "phase_frame": str(cat.get("cat_frame")), "rephased": rephased,
            "max_baseline_m": float(bl.max()), "dish_m": None if not np.isfinite(dish) else dish,
            "flagged_fraction_in_file": flagged_in_file, "flags_ignored": ignore_flags, **checks,
            "flagged_fraction": float(flag.mean())}


uvfits_to_vis = to_vis
"""The former name (uvfits only): ``to_vis`` reads uvh5 as well."""


@task(version="2.0")
def import_visibilities(path: str, obs_id: str, per_feed: bool = True, *, phase_center: str | None = None,
                        ignore_flags: bool = False, chans_per_subband: int | None = None) -> Product:
    """A uvfits or uvh5 file (by path; format by extension) as a ``radio.vis.raw`` product, one gain
    per feed by default, one sub-band per spectral window (see the module docstring)."""
    dest = context().output(f"{obs_id}.npz")
    summary = to_vis(path, dest, obs_id, per_feed=per_feed, phase_center=phase_center,
                     ignore_flags=ignore_flags, chans_per_subband=chans_per_subband)
    return Product(dest, type=cv.VIS_RAW, obs_id=obs_id, attributes={"source_file": Path(path).name,
                                                                     **summary})


@task(version="2.0")
def import_uvfits(path: str, obs_id: str, per_feed: bool = True, *, phase_center: str | None = None,
                  ignore_flags: bool = False, chans_per_subband: int | None = None) -> Product:
    """The former name of ``import_visibilities`` (kept for existing workflows; reads uvh5 too)."""
    dest = context().output(f"{obs_id}.npz")
    summary = to_vis(path, dest, obs_id, per_feed=per_feed, phase_center=phase_center,
                     ignore_flags=ignore_flags, chans_per_subband=chans_per_subband)
    return Product(dest, type=cv.VIS_RAW, obs_id=obs_id, attributes={"source_file": Path(path).name,
                                                                     **summary})


def phase_centre_model(data: dict[str, Any], flux_jy: float = 1.0, name: str = "phase-centre"
                       ) -> dict[str, Any]:
    """A calibrator model (conventions format): one flat-spectrum point source at the phase centre."""
    return {"name": name, "ref_freq_hz": float(np.mean(data["freq_hz"])),
            "sources": [{"name": name, "ra_deg": float(data["ra_deg"]), "dec_deg": float(data["dec_deg"]),
                         "flux_jy": float(flux_jy), "spectral_index": 0.0}]}


@task(version="1.0")
def point_model(vis: Product, flux_jy: float = 1.0, min_z: float = MIN_Z) -> Product:
    """A ``radio.cal.skymodel`` product: a point source at the observation's phase centre (the usual
    model of a calibrator observation; the flux sets the scale of the calibrated data).

    Refused (``Fatal``) when the data hold no point-like signal (bispectrum statistic ``z`` below
    ``min_z``, see ``closure``): calibrating noise against a point model would create the model's
    source out of nothing."""
    data = cv.read_vis(vis.local_path)
    obs_id = str(data["obs_id"])
    stat = bispectrum_z(data)
    if not stat["z"] >= min_z:
        raise Fatal(f"{obs_id}: no point-like signal in the data (bispectrum z = {stat['z']:.1f} over "
                    f"{stat['n_triple']} triple products, median |closure phase| "
                    f"{stat['median_abs_closure_deg']:.0f} deg; noise gives z ~ 0 and 90 deg; "
                    f"threshold {min_z:g}): "
                    "calibrating it against a point source would focus the noise into a source at the model",
                    hint="check the file (a calibrator scan should show closure phases near 0); lower min_z "
                         "only if you know the source is there")
    context().log.info("%s: bispectrum z = %.1f (point-like signal present)", obs_id, stat["z"])
    path = context().output(f"{obs_id}_pointmodel.json")
    path.write_text(json.dumps(phase_centre_model(data, flux_jy, name=f"{obs_id}-phase-centre")))
    return Product(path, type=cv.SKYMODEL, obs_id=obs_id)
