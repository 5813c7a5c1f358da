"""L1 → L2: attitude, sky coordinates, good-time intervals and energy scale (the "WXT team" module).

``calibrate`` turns one per-CMOS L1 event list into an L2 event list (OGIP conventions, see
``xray_ep.conventions``):

1. **Auxiliary data.**  It needs an attitude file and an orbit file of the observation.  If one is
   not given it raises ``MissingInput`` (the controller runs ``fetch_attitude``/``fetch_orbit``,
   which cut the needed window out of the aux archive, or parks the activity until a matching
   product is registered); if one is given but does not cover [TSTART, TSTOP] it raises
   ``InsufficientInput`` asking for a wider window.  Gaps *inside* the observation (attitude samples
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

from skyweave import Fatal, InsufficientInput, MissingInput, Product, context, task
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
def _write_l2(path: Path, cols: dict[str, NDArray[Any]], gti: FloatArray, header: dict[str, Any],
              wcs: WCS) -> None:
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
    fits.HDUList([fits.PrimaryHDU(), events, gti_hdu]).writeto(path, overwrite=True)


def _common_header(h: fits.Header, keys: list[str]) -> dict[str, Any]:
    return {k: h[k] for k in keys if k in h}


# -- the task --------------------------------------------------------------------------------------
@task(version="1.0", providers={cv.AUX_ATTITUDE: "fetch_attitude", cv.AUX_ORBIT: "fetch_orbit"},
      park=900.0, max_detours=3)
def calibrate(events: Product, archive: str = "", attitude: Product | None = None,
              orbit: Product | None = None) -> Product:
    """Calibrate one per-CMOS L1 event list into an L2 event list (type ``ep.l2.events``).

    ``archive`` is the aux archive directory handed to the providers when attitude or orbit data
    must be fetched.  Without attitude/orbit: ``MissingInput``; with a file that does not cover the
    observation: ``InsufficientInput`` (a wider window is asked for).
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
        "CREATOR": "xray_ep.l2.calibrate v1.0",
    }
    cols: dict[str, NDArray[Any]] = {"TIME": time, "X": x, "Y": y, "RA": ra, "DEC": dec, "PI": pi,
                                     "ENERGY": energy.astype(np.float32), "RAWX": rawx.astype(np.int16),
                                     "RAWY": rawy.astype(np.int16), "DETX": detx.astype(np.float32),
                                     "DETY": dety.astype(np.float32), "PHA": pha.astype(np.int16)}
    out = context().output(f"{obs_id}_{cmos}_l2.fits")
    _write_l2(out, cols, gti, header, wcs)
    _logger().info("%s %s: %d events calibrated, %d outside GTIs, exposure %.1f s, attitude %s, orbit %s",
                   obs_id, cmos, time.size, dropped, exposure, att.name, orb.name)
    return Product(out, type=cv.L2_EVENTS, obs_id=obs_id, detector=cmos,
                   attributes={"tstart": tstart, "tstop": tstop, "exposure": exposure,
                               "n_events": int(time.size), "ra_nom": nom_ra, "dec_nom": nom_dec})


# -- aux providers ---------------------------------------------------------------------------------
def _fetch(kind: str, obs_id: str, *, tstart: float, tstop: float, archive: str, margin: float) -> Product:
    """Cut [tstart - margin, tstop + margin] out of the archived aux file of ``kind`` (att/orb)."""
    extname, columns, ptype = ((cv.ATTITUDE_EXT, cv.ATTITUDE_COLUMNS, cv.AUX_ATTITUDE) if kind == "att"
                               else (cv.ORBIT_EXT, cv.ORBIT_COLUMNS, cv.AUX_ORBIT))
    if not archive:
        raise Fatal(f"no aux archive directory given to fetch the {extname.lower()} of {obs_id}",
                    hint="pass archive=DIR to calibrate (it is handed to the provider)")
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
    hdu.header["CREATOR"] = f"xray_ep.l2.fetch_{'attitude' if kind == 'att' else 'orbit'} v1.0"
    out = context().output(f"{obs_id}_{kind}_{int(lo)}_{int(hi)}.fits")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out, overwrite=True)
    _logger().info("%s: %d samples [%.1f, %.1f] from %s", out.name, i1 - i0, t[i0], t[i1 - 1], source)
    return Product(out, type=ptype, obs_id=obs_id, attributes={
        "tstart": float(t[i0]), "tstop": float(t[i1 - 1]), "archive_file": source.name})


@task(version="1.0")
def fetch_attitude(obs_id: str, tstart: float, tstop: float, archive: str, margin: float = 60.0) -> Product:
    """Provider of ``ep.aux.attitude``: the archived attitude of ``obs_id`` over [tstart - margin,
    tstop + margin] (plus one sample either side), as a product matching ``obs_id``."""
    return _fetch("att", obs_id, tstart=tstart, tstop=tstop, archive=archive, margin=margin)


@task(version="1.0")
def fetch_orbit(obs_id: str, tstart: float, tstop: float, archive: str, margin: float = 60.0) -> Product:
    """Provider of ``ep.aux.orbit``: the archived orbit of ``obs_id`` over [tstart - margin,
    tstop + margin] (plus one sample either side), as a product matching ``obs_id``."""
    return _fetch("orb", obs_id, tstart=tstart, tstop=tstop, archive=archive, margin=margin)


# -- merging ---------------------------------------------------------------------------------------
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
                                 "EQUINOX", "RADESYS"]),
        cv.KW_OBS_ID: obs_id,
        cv.KW_TSTART: float(first[cv.KW_TSTART]), cv.KW_TSTOP: float(first[cv.KW_TSTOP]),
        cv.KW_EXPOSURE: (exposure, "[s] sum of GTIs"), "ONTIME": exposure, "LIVETIME": exposure,
        "NCMOS": len(cmos_list), "CMOSLIST": ",".join(cmos_list),
        cv.KW_NBADPKT: max(int(h.get(cv.KW_NBADPKT, 0)) for h in headers),
        "CREATOR": "xray_ep.l2.merge_events v1.0",
    }
    out = context().output(f"{obs_id}_l2.fits")
    _write_l2(out, cols, gti, header, wcs)
    _logger().info("%s: merged %d CMOS lists, %d events, exposure %.1f s", obs_id, len(cmos_list),
                   cols["TIME"].size, exposure)
    return Product(out, type=cv.L2_EVENTS, obs_id=obs_id,
                   attributes={"cmos": cmos_list, "exposure": exposure, "n_events": int(cols["TIME"].size),
                               "ra_nom": nom_ra, "dec_nom": nom_dec})
