"""L1 → L2: attitude, sky coordinates, good-time intervals and energy scale (the "WXT team" module).

``calibrate`` turns one per-CMOS L1 event list into an L2 event list (OGIP conventions, see
``xray_ep.conventions``):

1. **Auxiliary data.**  It needs an attitude file and an orbit file of the observation.  If one is
   not given it raises ``MissingInput`` (the controller runs ``fetch_attitude``/``fetch_orbit``,
   which cut the needed window out of the aux archive, or parks the activity until a matching
   product is registered); if one is given but does not cover [TSTART, TSTOP] it raises
   ``InsufficientInput`` asking for a wider window (or, for a file fetched from an earlier state
   of the archive ``Folder``, a fresh fetch).  Gaps *inside* the observation (attitude samples
   more than ``MAX_ATT_GAP_S`` apart, orbit samples more than ``MAX_ORB_GAP_S`` apart) are not an
   error: they become holes in the good-time intervals.
2. **Sky coordinates.**  RAWX/RAWY plus the chip's place in the focal plane give DETX/DETY; the
   attitude (RA, DEC, ROLL), linearly interpolated at each event's frame time, rotates them into
   standard coordinates and de-projects them (gnomonic) to RA/DEC.  X/Y are sky pixels of a
   north-up TAN projection at the nominal pointing (the attitude at mid-observation), computed with
   ``astropy.wcs``; the X and Y columns carry TCTYP/TCRVL/TCRPX/TCDLT/TCUNI.
3. **Good time intervals.**  Frames with attitude and orbit coverage during which the pointing is
   above the Earth limb (elevation > ``ELV_MIN_DEG``, from the orbit); events outside are dropped
   and EXPOSURE is the GTI total.
4. **Energy.**  ``ENERGY = GAIN_OFFSET_KEV + (PHA + 0.5) * gain(cmos)`` (keV), ``PI`` on the common
   10 eV grid.

``merge_events`` joins the per-CMOS L2 lists of one observation into one list (for imaging), on
the sky pixel frame of the first, with a CCD_ID column and the intersection of their GTIs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import NDArray

from skyweave import Fatal, Folder, InsufficientInput, MissingInput, Product, context, task
from xray_ep import conventions as cv

log = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]

MAX_ATT_GAP_S = 5.0
"""Attitude samples further apart than this leave a hole in the GTI."""
MAX_ORB_GAP_S = 60.0
"""Orbit samples further apart than this leave a hole in the GTI."""
WIDER_MARGIN_S = 120.0
"""The margin asked of a provider when an aux file does not cover the observation."""
L2_FORMATS = {"TIME": "D", "X": "D", "Y": "D", "RA": "D", "DEC": "D", "PI": "J", "ENERGY": "E",
              "RAWX": "I", "RAWY": "I", "DETX": "E", "DETY": "E", "PHA": "I", "CCD_ID": "I"}


def _logger() -> logging.Logger:
    try:
        return context().log
    except Exception:
        return log


# -- reading ---------------------------------------------------------------------------------------
def _read_table(path: Path, extname: str, columns: list[str], what: str,
                ) -> tuple[dict[str, NDArray[Any]], fits.Header]:
    """Columns of one extension as native arrays; ``Fatal`` if it is not there or lacks columns."""
    try:
        with fits.open(path, memmap=False) as hdul:
            if extname not in hdul:
                raise Fatal(f"{path.name}: no {extname} extension: not a valid {what}",
                            hint=f"expected an OGIP {what} with an {extname} extension")
            hdu = hdul[extname]
            missing = [c for c in columns if c not in hdu.columns.names]
            if missing:
                raise Fatal(f"{path.name}: {what} lacks column(s) {', '.join(missing)}",
                            hint=f"{extname} needs {', '.join(columns)}")
            data = {c: np.asarray(hdu.data[c]).astype(hdu.data[c].dtype.newbyteorder("=")) for c in columns}
            return data, hdu.header.copy()
    except OSError as exc:
        raise Fatal(f"{path.name} is not a readable FITS file ({exc})") from exc


def _need(header: fits.Header, keyword: str, path: Path) -> Any:
    if keyword not in header:
        raise Fatal(f"{path.name}: header keyword {keyword} is missing", hint="see xray_ep.conventions")
    return header[keyword]


@dataclass
class _Aux:
    time: FloatArray
    values: dict[str, FloatArray]
    name: str


def _read_aux(product: Product, extname: str, columns: dict[str, str], obs_id: str, what: str) -> _Aux:
    path = product.local_path
    data, header = _read_table(path, extname, list(columns), what)
    if header.get(cv.KW_OBS_ID, obs_id) != obs_id:
        raise Fatal(f"{path.name} is the {what} of observation {header[cv.KW_OBS_ID]}, not of {obs_id}")
    order = np.argsort(data["TIME"], kind="stable")
    t = data["TIME"][order].astype(np.float64)
    return _Aux(t, {k: v[order].astype(np.float64) for k, v in data.items() if k != "TIME"}, path.name)


def _covers(aux: _Aux, tstart: float, tstop: float) -> bool:
    return aux.time.size >= 2 and aux.time[0] <= tstart and aux.time[-1] >= tstop


def _inside(aux: _Aux, t: FloatArray, max_gap: float) -> NDArray[np.bool_]:
    """True where ``t`` is within the aux time range and between samples at most ``max_gap`` apart."""
    i = np.clip(np.searchsorted(aux.time, t, side="right"), 1, aux.time.size - 1)
    ok = (t >= aux.time[0]) & (t <= aux.time[-1]) & (aux.time[i] - aux.time[i - 1] <= max_gap)
    return np.asarray(ok, dtype=bool)


# -- geometry (this team's own implementation of the conventions) ---------------------------------
def attitude_at(att: _Aux, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """RA, DEC, ROLL (deg) linearly interpolated at times ``t`` (RA and ROLL unwrapped first)."""
    ra = np.degrees(np.unwrap(np.radians(att.values["RA"])))
    roll = np.degrees(np.unwrap(np.radians(att.values["ROLL"])))
    return (np.interp(t, att.time, ra) % 360.0, np.interp(t, att.time, att.values["DEC"]),
            np.interp(t, att.time, roll) % 360.0)


def det_to_sky(detx: FloatArray, dety: FloatArray, ra0: FloatArray, dec0: FloatArray, roll: FloatArray,
               ) -> tuple[FloatArray, FloatArray]:
    """Detector pixels -> RA/DEC (deg) for an optical axis at (ra0, dec0) and ROLL (conventions)."""
    s = np.radians(cv.PIXEL_SCALE_ARCSEC / 3600.0)
    r = np.radians(roll)
    xi = s * (-detx * np.cos(r) + dety * np.sin(r))
    eta = s * (detx * np.sin(r) + dety * np.cos(r))
    a0, d0 = np.radians(ra0), np.radians(dec0)
    denom = np.cos(d0) - eta * np.sin(d0)
    ra = np.degrees(a0 + np.arctan2(xi, denom)) % 360.0
    dec = np.degrees(np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom)))
    return ra, dec


def sky_wcs(ra_nom: float, dec_nom: float) -> WCS:
    """The north-up TAN sky pixel frame of L2 event lists (1-based FITS pixels)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [ra_nom, dec_nom]
    w.wcs.crpix = [cv.SKY_CRPIX, cv.SKY_CRPIX]
    scale = cv.PIXEL_SCALE_ARCSEC / 3600.0
    w.wcs.cdelt = [-scale, scale]
    w.wcs.radesys = "ICRS"
    return w


def earth_elevation(ra: FloatArray, dec: FloatArray, pos_km: FloatArray) -> FloatArray:
    """Elevation (deg) of the pointing above the Earth limb seen from the spacecraft at ``pos_km``."""
    a, d = np.radians(ra), np.radians(dec)
    point = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)
    dist = np.linalg.norm(pos_km, axis=-1)
    cos_to_earth = -np.sum(point * pos_km, axis=-1) / dist
    elv = np.degrees(np.arccos(np.clip(cos_to_earth, -1, 1)) - np.arcsin(cv.EARTH_RADIUS_KM / dist))
    return np.asarray(elv, dtype=np.float64)


def _runs(good: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """First and one-past-last index of each run of True."""
    edges = np.diff(np.r_[0, good.astype(np.int8), 0])
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _intersect(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection of two sorted, disjoint interval lists (rows START, STOP)."""
    out = [(max(s1, s2), min(e1, e2)) for s1, e1 in a.tolist() for s2, e2 in b.tolist()
           if min(e1, e2) > max(s1, s2)]
    return np.array(sorted(out), dtype=np.float64).reshape(-1, 2)


def good_frames(att: _Aux, orb: _Aux, *, tstart: float, tstop: float, frame: float,
                ) -> tuple[NDArray[np.bool_], FloatArray]:
    """Which frames of [tstart, tstop) are good (attitude and orbit coverage, pointing above the
    Earth limb), and the GTIs (rows START, STOP) they make."""
    nframes = round((tstop - tstart) / frame)
    grid = np.asarray(tstart + frame * np.arange(nframes), dtype=np.float64)
    g_ra, g_dec, _ = attitude_at(att, grid)
    g_pos = np.stack([np.interp(grid, orb.time, orb.values[k]) for k in ("X", "Y", "Z")], axis=-1)
    good = (_inside(att, grid, MAX_ATT_GAP_S) & _inside(orb, grid, MAX_ORB_GAP_S)
            & (earth_elevation(g_ra, g_dec, g_pos) > cv.ELV_MIN_DEG))
    first, last = _runs(good)
    gti = np.stack([grid[first], np.minimum(tstart + frame * last, tstop)], axis=-1).astype(np.float64)
    return good, gti


# -- writing ---------------------------------------------------------------------------------------
def aspect_histogram(att: _Aux, gti: FloatArray, tstart: float, tstop: float,
                     bin_s: float = cv.ASPHIST_BIN_S) -> dict[str, FloatArray]:
    """The attitude over the good time: bins of ``bin_s`` from ``tstart``, each with its good time
    (DURATION) and the attitude at the middle of that good time (the ASPHIST extension)."""
    edges = np.append(np.arange(tstart, tstop, bin_s), tstop)
    lo, hi = edges[:-1, None], edges[1:, None]
    if gti.size:
        overlap = np.clip(np.minimum(hi, gti[None, :, 1]) - np.maximum(lo, gti[None, :, 0]), 0, None)
        dur = overlap.sum(1)
        mid = np.where(dur > 0, (overlap * 0.5 * (np.maximum(lo, gti[None, :, 0])
                                                  + np.minimum(hi, gti[None, :, 1]))).sum(1)
                       / np.maximum(dur, 1e-12), 0.5 * (edges[:-1] + edges[1:]))
    else:
        dur, mid = np.zeros(edges.size - 1), 0.5 * (edges[:-1] + edges[1:])
    keep = dur > 0
    ra, dec, roll = attitude_at(att, mid[keep])
    return {"TIME": edges[:-1][keep], "DURATION": dur[keep], "RA": ra, "DEC": dec, "ROLL": roll}


def _asphist_hdu(hist: dict[str, FloatArray], header: dict[str, Any]) -> fits.BinTableHDU:
    units = {"TIME": "s", "DURATION": "s", "RA": "deg", "DEC": "deg", "ROLL": "deg"}
    hdu = fits.BinTableHDU.from_columns([fits.Column(name=k, format="D", unit=u, array=hist[k])
                                         for k, u in units.items()], name=cv.ASPHIST_EXT)
    for key in ("TELESCOP", "INSTRUME", cv.KW_OBS_ID, cv.KW_TSTART, cv.KW_TSTOP, "MJDREFI", "MJDREFF",
                "TIMESYS", "TIMEUNIT"):
        if key in header:
            hdu.header[key] = header[key]
    hdu.header["HDUCLASS"], hdu.header["HDUCLAS1"] = "OGIP", "ASPHIST"
    return hdu


def _write_l2(path: Path, cols: dict[str, NDArray[Any]], gti: FloatArray, header: dict[str, Any],
              wcs: WCS, *, asphist: dict[str, FloatArray] | None = None) -> None:
    crval, crpix, cdelt = wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt
    columns = []
    for name, array in cols.items():
        unit = cv.L2_COLUMNS.get(name, "")
        kw: dict[str, Any] = {}
        if name in ("X", "Y"):
            i = 0 if name == "X" else 1
            kw = {"coord_type": ("RA---TAN", "DEC--TAN")[i], "coord_unit": "deg",
                  "coord_ref_point": float(crpix[i]), "coord_ref_value": float(crval[i]),
                  "coord_inc": float(cdelt[i])}
        columns.append(fits.Column(name=name, format=L2_FORMATS[name], unit=unit or None, array=array, **kw))
    events = fits.BinTableHDU.from_columns(columns, name=cv.EVENTS_EXT)
    names = list(cols)
    limits = {"X": (0.5, cv.SKY_NPIX + 0.5), "Y": (0.5, cv.SKY_NPIX + 0.5), "PI": (0, cv.N_PI - 1),
              "PHA": (0, cv.N_PHA - 1), "RAWX": (0, cv.CHIP_SIZE - 1), "RAWY": (0, cv.CHIP_SIZE - 1)}
    for name, (lo, hi) in limits.items():
        if name in names:
            n = names.index(name) + 1
            events.header[f"TLMIN{n}"], events.header[f"TLMAX{n}"] = lo, hi
    gti_hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format="D", unit=u, array=gti[:, i])
         for i, (n, u) in enumerate(cv.GTI_COLUMNS.items())], name=cv.GTI_EXT)
    for hdu, cls in ((events, "EVENTS"), (gti_hdu, "GTI")):
        h = hdu.header
        h["HDUCLASS"], h["HDUCLAS1"] = "OGIP", cls
        for key, value in header.items():
            h[key] = value
    events.header["DATALVL"] = "L2"
    hdus = [fits.PrimaryHDU(), events, gti_hdu]
    if asphist is not None:
        hdus.append(_asphist_hdu(asphist, header))
    fits.HDUList(hdus).writeto(path, overwrite=True)


def _common_header(h: fits.Header, keys: list[str]) -> dict[str, Any]:
    return {k: h[k] for k in keys if k in h}


# -- the task --------------------------------------------------------------------------------------
def archive_folder(archive: str | Path, obs_id: str) -> Folder | None:
    """The aux archive directory as the ``Folder`` of ``obs_id``'s aux files (``None`` for ``""``):
    its fingerprint covers just those files, so editing one re-runs that observation's calibration
    and fetches, and leaves the other observations' results reused."""
    return Folder(archive, glob=cv.aux_glob(obs_id)) if str(archive) else None


@task(version="1.2", providers={cv.AUX_ATTITUDE: "fetch_attitude", cv.AUX_ORBIT: "fetch_orbit"},
      park=900.0, max_detours=3)
def calibrate(events: Product, archive: Folder | None = None, attitude: Product | None = None,
              orbit: Product | None = None) -> Product:
    """Calibrate one per-CMOS L1 event list into an L2 event list (type ``ep.l2.events``).

    ``archive`` is the aux archive (``archive_folder``) handed to the providers when attitude or
    orbit data must be fetched; its fingerprint is part of the cache key.  Without attitude/orbit:
    ``MissingInput``; with a file that does not cover the observation, or one fetched from an
    earlier state of the archive: ``InsufficientInput`` (a wider window, or a fresh fetch).
    """
    path = events.local_path
    ev, h1 = _read_table(path, cv.EVENTS_EXT, list(cv.L1_COLUMNS), "L1 event list")
    obs_id = str(_need(h1, cv.KW_OBS_ID, path))
    cmos = str(_need(h1, cv.KW_CMOS_ID, path))
    tstart, tstop = float(_need(h1, cv.KW_TSTART, path)), float(_need(h1, cv.KW_TSTOP, path))
    try:
        chip = cv.cmos_index(cmos)
    except ValueError as exc:
        raise Fatal(f"{path.name}: {exc}") from exc
    frame = float(h1.get("TIMEDEL", cv.FRAME_TIME))
    ask = {"obs_id": obs_id, "tstart": tstart, "tstop": tstop, "archive": archive}

    aux: dict[str, _Aux] = {}
    for param, product, ptype, ext, columns in (
            ("attitude", attitude, cv.AUX_ATTITUDE, cv.ATTITUDE_EXT, cv.ATTITUDE_COLUMNS),
            ("orbit", orbit, cv.AUX_ORBIT, cv.ORBIT_EXT, cv.ORBIT_COLUMNS)):
        if product is None:
            raise MissingInput(param, ptype, match={"obs_id": obs_id},
                               reason=f"no {param} file for observation {obs_id}",
                               provider_params=ask)
        if _stale(product, archive):
            raise InsufficientInput(param, ptype, match={"obs_id": obs_id},
                                    reason=f"{param} file {product.name} was fetched from an earlier "
                                           f"state of the archive {archive}", provider_params=ask)
        got = _read_aux(product, ext, columns, obs_id, f"{param} file")
        if not _covers(got, tstart, tstop):
            span = f"[{got.time[0]:.1f}, {got.time[-1]:.1f}]" if got.time.size else "nothing"
            raise InsufficientInput(param, ptype, match={"obs_id": obs_id},
                                    reason=f"{param} file {got.name} covers {span}, the events of {cmos} "
                                           f"need [{tstart:.1f}, {tstop:.1f}]",
                                    provider_params={**ask, "margin": WIDER_MARGIN_S})
        aux[param] = got
    att, orb = aux["attitude"], aux["orbit"]

    # good time intervals, on the frame grid (events carry their frame's start time)
    good, gti = good_frames(att, orb, tstart=tstart, tstop=tstop, frame=frame)
    nframes = good.size
    time = ev["TIME"].astype(np.float64)
    k = np.clip(np.round((time - tstart) / frame).astype(np.int64), 0, max(nframes - 1, 0))
    keep = good[k] if nframes else np.zeros(time.size, dtype=bool)
    dropped = int(time.size - keep.sum())
    time = time[keep]
    rawx, rawy, pha = (ev[c][keep].astype(np.int64) for c in ("RAWX", "RAWY", "PHA"))

    # detector -> sky
    ox, oy = cv.chip_origin(chip)
    detx = np.asarray(ox + rawx + 0.5, dtype=np.float64)
    dety = np.asarray(oy + rawy + 0.5, dtype=np.float64)
    ra0, dec0, roll = attitude_at(att, time)
    ra, dec = det_to_sky(detx, dety, ra0, dec0, roll)
    nom_ra, nom_dec, nom_roll = (float(v[0]) for v in attitude_at(att, np.array([0.5 * (tstart + tstop)])))
    nom_ra, nom_dec = round(nom_ra, 6), round(nom_dec, 6)
    wcs = sky_wcs(nom_ra, nom_dec)
    x, y = wcs.all_world2pix(ra, dec, 1)

    # energy scale
    energy = cv.GAIN_OFFSET_KEV + (pha + 0.5) * cv.gain_kev_per_chan(chip)
    pi = np.clip(np.floor(energy / cv.PI_KEV_PER_CHAN), 0, cv.N_PI - 1).astype(np.int32)

    exposure = float(np.sum(gti[:, 1] - gti[:, 0]))
    header = {
        **_common_header(h1, ["TELESCOP", "INSTRUME", "MJDREFI", "MJDREFF", "TIMESYS", "TIMEUNIT",
                              "TIMEREF", "TIMEDEL", cv.KW_NBADPKT]),
        cv.KW_OBS_ID: obs_id, cv.KW_CMOS_ID: cmos, cv.KW_TSTART: tstart, cv.KW_TSTOP: tstop,
        cv.KW_EXPOSURE: (exposure, "[s] sum of GTIs"), "ONTIME": exposure, "LIVETIME": exposure,
        "RA_NOM": nom_ra, "DEC_NOM": nom_dec, "PA_NOM": round(nom_roll, 6),
        "RA_PNT": nom_ra, "DEC_PNT": nom_dec, "EQUINOX": 2000.0, "RADESYS": "ICRS",
        "ATTFILE": att.name, "ORBFILE": orb.name, "NGTIDROP": (dropped, "events dropped outside GTIs"),
        **cv.psf_keywords(),
        "CREATOR": "xray_ep.l2.calibrate v1.2",
    }
    cols: dict[str, NDArray[Any]] = {"TIME": time, "X": x, "Y": y, "RA": ra, "DEC": dec, "PI": pi,
                                     "ENERGY": energy.astype(np.float32), "RAWX": rawx.astype(np.int16),
                                     "RAWY": rawy.astype(np.int16), "DETX": detx.astype(np.float32),
                                     "DETY": dety.astype(np.float32), "PHA": pha.astype(np.int16)}
    out = context().output(f"{obs_id}_{cmos}_l2.fits")
    _write_l2(out, cols, gti, header, wcs, asphist=aspect_histogram(att, gti, tstart, tstop))
    _logger().info("%s %s: %d events calibrated, %d outside GTIs, exposure %.1f s, attitude %s, orbit %s",
                   obs_id, cmos, time.size, dropped, exposure, att.name, orb.name)
    return Product(out, type=cv.L2_EVENTS, obs_id=obs_id, detector=cmos,
                   attributes={"tstart": tstart, "tstop": tstop, "exposure": exposure,
                               "n_events": int(time.size), "ra_nom": nom_ra, "dec_nom": nom_dec})


# -- aux providers ---------------------------------------------------------------------------------
ARCHIVE_STATE = "archive_state"
"""Attribute of a fetched aux product: the fingerprint of the archive ``Folder`` it was cut from."""


def _stale(product: Product, archive: Folder | None) -> bool:
    """Was ``product`` fetched from another state of ``archive`` than the current one?  (Aux files
    registered by hand carry no archive state and are never stale.)"""
    made_from = product.attributes.get(ARCHIVE_STATE)
    return archive is not None and bool(archive.checksum) and made_from is not None \
        and made_from != archive.checksum


def _fetch(kind: str, obs_id: str, *, tstart: float, tstop: float, archive: Folder | None,
           margin: float) -> Product:
    """Cut [tstart - margin, tstop + margin] out of the archived aux file of ``kind`` (att/orb)."""
    extname, columns, ptype = ((cv.ATTITUDE_EXT, cv.ATTITUDE_COLUMNS, cv.AUX_ATTITUDE) if kind == "att"
                               else (cv.ORBIT_EXT, cv.ORBIT_COLUMNS, cv.AUX_ORBIT))
    if archive is None:
        raise Fatal(f"no aux archive directory given to fetch the {extname.lower()} of {obs_id}",
                    hint="pass archive=archive_folder(DIR, obs_id) to calibrate (it is handed to the "
                         "provider)")
    source = Path(archive) / cv.aux_filename(obs_id, kind)
    if not source.is_file():
        raise Fatal(f"the archive {archive} has no {source.name} for observation {obs_id}",
                    hint="the activity parks until the file is registered (`skyweave products add`)")
    data, header = _read_table(source, extname, list(columns), f"archived {extname.lower()} file")
    lo, hi = tstart - margin, tstop + margin
    t = data["TIME"]
    # keep the samples just outside the window too, so interpolation covers its edges
    i0 = max(int(np.searchsorted(t, lo, side="right")) - 1, 0)
    i1 = min(int(np.searchsorted(t, hi, side="left")) + 1, t.size)
    if t.size == 0 or t[0] > tstart or t[-1] < tstop:
        raise Fatal(f"the archived {source.name} does not cover [{tstart:.1f}, {tstop:.1f}] either")
    cols = [fits.Column(name=n, format="D", unit=u, array=data[n][i0:i1]) for n, u in columns.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=extname)
    for key in ("TELESCOP", "INSTRUME", "MJDREFI", "MJDREFF", "TIMESYS", "TIMEUNIT", "REFFRAME"):
        if key in header:
            hdu.header[key] = header[key]
    hdu.header[cv.KW_OBS_ID] = obs_id
    hdu.header[cv.KW_TSTART], hdu.header[cv.KW_TSTOP] = float(t[i0]), float(t[i1 - 1])
    hdu.header["ARCHFILE"] = source.name
    hdu.header["CREATOR"] = f"xray_ep.l2.fetch_{'attitude' if kind == 'att' else 'orbit'} v1.1"
    out = context().output(f"{obs_id}_{kind}_{int(lo)}_{int(hi)}.fits")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out, overwrite=True)
    _logger().info("%s: %d samples [%.1f, %.1f] from %s", out.name, i1 - i0, t[i0], t[i1 - 1], source)
    return Product(out, type=ptype, obs_id=obs_id, attributes={
        "tstart": float(t[i0]), "tstop": float(t[i1 - 1]), "archive_file": source.name,
        ARCHIVE_STATE: archive.checksum})


@task(version="1.1")
def fetch_attitude(obs_id: str, tstart: float, tstop: float, archive: Folder | None,
                   margin: float = 60.0) -> Product:
    """Provider of ``ep.aux.attitude``: the archived attitude of ``obs_id`` over [tstart - margin,
    tstop + margin] (plus one sample either side), as a product matching ``obs_id``."""
    return _fetch("att", obs_id, tstart=tstart, tstop=tstop, archive=archive, margin=margin)


@task(version="1.1")
def fetch_orbit(obs_id: str, tstart: float, tstop: float, archive: Folder | None,
                margin: float = 60.0) -> Product:
    """Provider of ``ep.aux.orbit``: the archived orbit of ``obs_id`` over [tstart - margin,
    tstop + margin] (plus one sample either side), as a product matching ``obs_id``."""
    return _fetch("orb", obs_id, tstart=tstart, tstop=tstop, archive=archive, margin=margin)


# -- merging ---------------------------------------------------------------------------------------
def _merged_asphist(events: list[Product], gti: FloatArray) -> dict[str, FloatArray] | None:
    """The first input's aspect histogram (the attitude is the observation's, not the chip's) with
    each bin's good time recomputed on the merged GTI; ``None`` if the inputs have none."""
    first = sorted(events, key=lambda p: str(p.detector or p.local_path.name))[0].local_path
    with fits.open(first, memmap=False) as hdul:
        if cv.ASPHIST_EXT not in hdul:
            return None
        data = hdul[cv.ASPHIST_EXT].data
        hist = {k: np.asarray(data[k], dtype=np.float64) for k in ("TIME", "DURATION", "RA", "DEC", "ROLL")}
    lo, hi = hist["TIME"][:, None], hist["TIME"][:, None] + cv.ASPHIST_BIN_S
    if not gti.size:
        return {k: v[:0] for k, v in hist.items()}
    dur = np.clip(np.minimum(hi, gti[None, :, 1]) - np.maximum(lo, gti[None, :, 0]), 0, None).sum(1)
    hist["DURATION"] = np.minimum(dur, hist["DURATION"])
    keep = hist["DURATION"] > 0
    return {k: v[keep] for k, v in hist.items()}


@task(version="1.0")
def merge_events(events: list[Product]) -> Product:
    """Merge the per-CMOS L2 event lists of one observation into one L2 list (for imaging).

    Sky pixels are put on the frame of the first list (recomputed from RA/DEC when another list's
    TCRVL differs), a CCD_ID column says which chip saw each event, events are sorted by TIME,
    the GTI is the intersection of the inputs' GTIs (events outside it dropped) and EXPOSURE its
    total.  All inputs must belong to the same observation.
    """
    if not events:
        raise Fatal("merge_events got no event lists")
    wanted = list(cv.L2_COLUMNS)
    parts: list[dict[str, NDArray[Any]]] = []
    headers: list[fits.Header] = []
    gti: FloatArray | None = None
    for product in sorted(events, key=lambda p: str(p.detector or p.local_path.name)):
        data, header = _read_table(product.local_path, cv.EVENTS_EXT, wanted, "L2 event list")
        g, _ = _read_table(product.local_path, cv.GTI_EXT, list(cv.GTI_COLUMNS), "L2 event list")
        rows = np.stack([g["START"], g["STOP"]], axis=-1).astype(np.float64)
        gti = rows if gti is None else _intersect(gti, rows)
        data["CCD_ID"] = np.full(data["TIME"].size, cv.cmos_index(str(header[cv.KW_CMOS_ID])), dtype=np.int16)
        parts.append(data)
        headers.append(header)
    assert gti is not None
    obs_ids = {str(h.get(cv.KW_OBS_ID)) for h in headers}
    if len(obs_ids) != 1:
        raise Fatal(f"merge_events got event lists of several observations: {sorted(obs_ids)}")
    obs_id = obs_ids.pop()
    first = headers[0]
    xcol = 1 + wanted.index("X")
    nom_ra, nom_dec = float(first[f"TCRVL{xcol}"]), float(first[f"TCRVL{xcol + 1}"])
    wcs = sky_wcs(nom_ra, nom_dec)
    for data, header in zip(parts[1:], headers[1:], strict=True):
        if (header[f"TCRVL{xcol}"], header[f"TCRVL{xcol + 1}"]) != (nom_ra, nom_dec):
            data["X"], data["Y"] = wcs.all_world2pix(data["RA"], data["DEC"], 1)
    cols = {name: np.concatenate([p[name] for p in parts]) for name in [*wanted, "CCD_ID"]}
    t = cols["TIME"]
    idx = np.searchsorted(gti[:, 0], t, side="right") - 1
    keep = (idx >= 0) & (t < gti[np.maximum(idx, 0), 1]) if gti.size else np.zeros(t.size, dtype=bool)
    order = np.argsort(t[keep], kind="stable")
    cols = {k: v[keep][order] for k, v in cols.items()}
    cmos_list = [str(h[cv.KW_CMOS_ID]) for h in headers]
    exposure = float(np.sum(gti[:, 1] - gti[:, 0])) if gti.size else 0.0
    header = {
        **_common_header(first, ["TELESCOP", "INSTRUME", "MJDREFI", "MJDREFF", "TIMESYS", "TIMEUNIT",
                                 "TIMEREF", "TIMEDEL", "RA_NOM", "DEC_NOM", "PA_NOM", "RA_PNT", "DEC_PNT",
                                 "EQUINOX", "RADESYS", *cv.psf_keywords()]),
        cv.KW_OBS_ID: obs_id,
        cv.KW_TSTART: float(first[cv.KW_TSTART]), cv.KW_TSTOP: float(first[cv.KW_TSTOP]),
        cv.KW_EXPOSURE: (exposure, "[s] sum of GTIs"), "ONTIME": exposure, "LIVETIME": exposure,
        "NCMOS": len(cmos_list), "CMOSLIST": ",".join(cmos_list),
        cv.KW_NBADPKT: max(int(h.get(cv.KW_NBADPKT, 0)) for h in headers),
        "CREATOR": "xray_ep.l2.merge_events v1.1",
    }
    out = context().output(f"{obs_id}_l2.fits")
    _write_l2(out, cols, gti, header, wcs, asphist=_merged_asphist(events, gti))
    _logger().info("%s: merged %d CMOS lists, %d events, exposure %.1f s", obs_id, len(cmos_list),
                   cols["TIME"].size, exposure)
    return Product(out, type=cv.L2_EVENTS, obs_id=obs_id,
                   attributes={"cmos": cmos_list, "exposure": exposure, "n_events": int(cols["TIME"].size),
                               "ra_nom": nom_ra, "dec_nom": nom_dec})


# -- exposure map ----------------------------------------------------------------------------------
def sky_to_det(ra: FloatArray, dec: FloatArray, ra0: float, dec0: float, roll: float,
               ) -> tuple[FloatArray, FloatArray]:
    """RA/DEC (deg) -> detector pixels for an optical axis at (ra0, dec0) and ROLL (inverse of
    ``det_to_sky``)."""
    a, d, a0, d0 = np.radians(ra), np.radians(dec), np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    s, r = np.radians(cv.PIXEL_SCALE_ARCSEC / 3600.0), np.radians(roll)
    return (-xi * np.cos(r) + eta * np.sin(r)) / s, (xi * np.sin(r) + eta * np.cos(r)) / s


def _on_present_chip(detx: FloatArray, dety: FloatArray, present: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Whether detector positions fall on a present chip (the fast half of ``_on_chip``)."""
    pitch = cv.CHIP_SIZE + cv.CHIP_GAP
    half = (cv.MOSAIC * pitch - cv.CHIP_GAP) / 2.0
    col = np.floor_divide(detx + half, pitch)
    row = np.floor_divide(dety + half, pitch)
    ok = ((detx + half - col * pitch) < cv.CHIP_SIZE) & ((dety + half - row * pitch) < cv.CHIP_SIZE)
    ok &= (col >= 0) & (col < cv.MOSAIC) & (row >= 0) & (row < cv.MOSAIC)
    chip = np.where(ok, row * cv.MOSAIC + col, 0).astype(np.intp)
    return np.asarray(ok & present[chip])


def _pix2world(wcs: Any, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(RA, DEC) in degrees of 1-based pixel coordinates."""
    ra, dec = wcs.all_pix2world(x, y, 1)
    return np.asarray(ra, float), np.asarray(dec, float)


def _on_chip(detx: FloatArray, dety: FloatArray, present: NDArray[np.bool_],
             ) -> tuple[NDArray[np.bool_], FloatArray]:
    """Whether detector positions fall on a present chip, and their distance (pixels) to the
    nearest chip edge (0 in the gaps and outside the mosaic, where no chip is near)."""
    pitch = cv.CHIP_SIZE + cv.CHIP_GAP
    half = (cv.MOSAIC * pitch - cv.CHIP_GAP) / 2.0
    u, v = detx + half, dety + half
    col, row = np.floor(u / pitch), np.floor(v / pitch)
    rx, ry = u - col * pitch, v - row * pitch
    inside = ((col >= 0) & (col < cv.MOSAIC) & (row >= 0) & (row < cv.MOSAIC)
              & (rx < cv.CHIP_SIZE) & (ry < cv.CHIP_SIZE))
    chip = np.where(inside, row * cv.MOSAIC + col, 0).astype(np.int64)
    edge = np.minimum.reduce([rx, cv.CHIP_SIZE - rx, ry, cv.CHIP_SIZE - ry])
    outside = np.maximum.reduce([-u, -v, u - (cv.MOSAIC * pitch - cv.CHIP_GAP),
                                 v - (cv.MOSAIC * pitch - cv.CHIP_GAP)])
    return np.asarray(inside & present[chip]), np.asarray(np.where(inside, edge, np.maximum(outside, 0.0)))


def exposure(hist: dict[str, FloatArray], present: NDArray[np.bool_], wcs: WCS,
             grid: tuple[float, float, float, int, int]) -> tuple[FloatArray, int]:
    """Seconds of good time per pixel of the image ``grid`` = ``(x0, y0, binsize, nx, ny)`` (lower
    sky-pixel edges, binsize, shape) for the aspect histogram ``hist`` and the ``present`` chips;
    also the number of pixels followed through the attitude history."""
    x0, y0, b, nx, ny = grid
    if not hist["DURATION"].size:
        return np.zeros((ny, nx)), 0
    px, py = np.meshgrid(x0 + (np.arange(nx) + 0.5) * b, y0 + (np.arange(ny) + 0.5) * b)
    ra, dec = wcs.all_pix2world(px.ravel(), py.ravel(), 1)
    k = int(np.argmin(np.abs(np.cumsum(hist["DURATION"]) - 0.5 * hist["DURATION"].sum())))
    ref = (float(hist["RA"][k]), float(hist["DEC"][k]), float(hist["ROLL"][k]))
    detx, dety = sky_to_det(ra, dec, *ref)
    on, edge = _on_chip(detx, dety, present)
    # how far a sky point moves on the detector over the observation (pixels), plus a margin
    ox, oy = sky_to_det(hist["RA"], hist["DEC"], ref[0], ref[1], 0.0)
    droll = np.radians(np.max(np.abs((hist["ROLL"] - ref[2] + 180.0) % 360.0 - 180.0)))
    reach = float(np.max(np.hypot(ox, oy)) + droll * np.max(np.hypot(detx, dety)) + 2.0 + b)
    flat = np.where(on, float(hist["DURATION"].sum()), 0.0)
    # only pixels near the edge of a present chip need following: the present chips dilated by reach
    pitch = cv.CHIP_SIZE + cv.CHIP_GAP
    half = (cv.MOSAIC * pitch - cv.CHIP_GAP) / 2.0
    r = int(np.ceil(reach))
    n_det = int(2 * half) + 2 * r + 2
    near = np.zeros((n_det, n_det), dtype=bool)
    for c in np.flatnonzero(present):
        ix, iy = (int(v + half) for v in cv.chip_origin(int(c)))
        near[iy: iy + cv.CHIP_SIZE + 2 * r + 1, ix: ix + cv.CHIP_SIZE + 2 * r + 1] = True
    iu = np.clip(np.floor(detx + half + r).astype(np.int64), 0, n_det - 1)
    iv = np.clip(np.floor(dety + half + r).astype(np.int64), 0, n_det - 1)
    moving = np.flatnonzero((edge < reach) & near[iv, iu])
    if moving.size:  # 2x2 sub-pixels, so a pixel straddling a chip edge gets its covered share
        q = 0.25 * b
        sub = [sky_to_det(*_pix2world(wcs, px.ravel()[moving] + sx, py.ravel()[moving] + sy), *ref)
               for sx in (-q, q) for sy in (-q, q)]
        # at another attitude a sky point's detector position is an affine function of its position
        # at the reference attitude (to << 0.01 pixel over the field): fitted on 3 anchors per bin
        anchors = np.array([[-half, -half], [half, -half], [-half, half]])
        a_ra, a_dec = det_to_sky(anchors[:, 0], anchors[:, 1], *(np.full(3, v) for v in ref))
        base = np.column_stack([anchors, np.ones(3)])
        acc = np.zeros(moving.size)
        for dur, a0, d0, r0 in zip(hist["DURATION"], hist["RA"], hist["DEC"], hist["ROLL"], strict=True):
            tx, ty = sky_to_det(a_ra, a_dec, a0, d0, r0)
            (axx, axy, ax0), (ayx, ayy, ay0) = np.linalg.solve(base, np.column_stack([tx, ty])).T
            for sx, sy in sub:
                acc += 0.25 * dur * _on_present_chip(axx * sx + axy * sy + ax0, ayx * sx + ayy * sy + ay0,
                                                      present)
        flat[moving] = acc
    return flat.reshape(ny, nx), int(moving.size)


def _aspect_of(path: Path) -> tuple[dict[str, FloatArray], fits.Header]:
    with fits.open(path, memmap=False) as hdul:
        if cv.ASPHIST_EXT not in hdul:
            raise Fatal(f"{path.name} has no {cv.ASPHIST_EXT} extension: cannot make an exposure map",
                        hint="recalibrate with xray_ep.l2.calibrate >= 1.1")
        data = hdul[cv.ASPHIST_EXT].data
        hist = {k: np.asarray(data[k], dtype=np.float64) for k in ("DURATION", "RA", "DEC", "ROLL")}
        return hist, hdul[cv.EVENTS_EXT].header.copy()


@task(version="1.0")
def exposure_map(events: Product, image: Product) -> Product:
    """Exposure map (s of good time per image pixel, type ``ep.l3.expmap``) of an L2 event list on
    the grid of its counts image (made by ``l3_image.make_image``).

    For each bin of the event list's aspect histogram (``ASPHIST``: the attitude over the good
    time), every image pixel is mapped to the detector and counts the bin's good time if it lands
    on one of the observation's CMOS chips (``CMOSLIST``/``CMOS_ID``).  Pixels that stay well
    inside a chip (or away from the present chips) for all attitudes are filled at once; only
    pixels near chip edges are followed through the attitude history, on 2x2 sub-pixels.  No
    vignetting (the simulator has none).  This turns chip gaps and edges into known, not guessed,
    background and exposure.
    """
    path = events.local_path
    hist, h = _aspect_of(path)
    names = [n.strip() for n in str(h.get("CMOSLIST", h.get(cv.KW_CMOS_ID, ""))).split(",") if n.strip()]
    present = np.zeros(cv.N_CMOS, dtype=bool)
    try:
        present[[cv.cmos_index(n) for n in names]] = True
    except ValueError as exc:
        raise Fatal(f"{path.name}: {exc}") from exc
    xcol = 1 + list(cv.L2_COLUMNS).index("X")
    wcs = sky_wcs(float(h[f"TCRVL{xcol}"]), float(h[f"TCRVL{xcol + 1}"]))
    header = fits.getheader(image.local_path)
    try:
        grid = (float(header["CRVAL1P"]), float(header["CRVAL2P"]), float(header["CDELT1P"]),
                int(header["NAXIS1"]), int(header["NAXIS2"]))
    except KeyError as exc:
        raise Fatal(f"{image.local_path.name}: missing image keyword {exc.args[0]}",
                    hint="exposure_map needs an image made by make_image") from exc
    expmap, followed = exposure(hist, present, wcs, grid)
    header["BUNIT"] = "s"
    header["HDUCLAS1"], header["HDUCLAS2"] = "IMAGE", "EXPOSURE"
    header["EXPOSURE"] = (float(hist["DURATION"].sum()), "[s] good time of the aspect histogram")
    header["CMOSLIST"] = ",".join(names)
    header["EVFILE"] = (path.name[:60], "event list whose aspect made this map")
    header["CREATOR"] = "xray_ep.l2.exposure_map v1.0"
    obs_id = str(h.get(cv.KW_OBS_ID, events.obs_id or ""))
    out = context().output(f"{obs_id}_expmap_b{int(grid[2])}.fits")
    fits.PrimaryHDU(expmap.astype(np.float32), header=header).writeto(out, overwrite=True)
    _logger().info("%s: exposure map %dx%d, %.1f%% of the pixels exposed, %d near chip edges followed",
                   out.name, grid[3], grid[4], 100.0 * float(np.mean(expmap > 0)), followed)
    return Product(out, type=cv.L3_EXPMAP, obs_id=obs_id or events.obs_id, detector=events.detector,
                   attributes={"exposure": float(hist["DURATION"].sum()), "shape": [grid[4], grid[3]]})
