"""L3 per-source products: OGIP light curve, OGIP PHA spectrum, and a transient test.

Source events are those within ``radius_pix`` sky pixels of the source; background events are
those in an annulus ``[r_in, r_out]`` around it with the other detected sources (``exclude`` of
the source dict) cut out.  The background is scaled by the ratio of the geometric areas, computed
on a 0.25-pixel grid so the exclusion circles are accounted for exactly enough.

A *field* source (``region = 'field'``, made by ``xray_ep.archive.field_source`` for a
non-imaging instrument such as NICER or the RXTE PCA) is every event of the list: there is no
sky position to cut on, hence no local background (``HDUCLAS2 = 'TOTAL'``, ``BACKV = 0``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from astropy.io import fits
from astropy.time import Time
from scipy import special

from skyweave import Fatal, Product, context, task
from xray_ep.evtfile import in_gti, read_event_file
from xray_ep.l3_image import EventList, poisson_logsf, post_trials_logp, read_events, sigma_from_logp


class _Events(Protocol):
    """What the per-source products need of an event list (``EventList`` or ``EventData``)."""

    @property
    def time(self) -> np.ndarray: ...
    @property
    def gti(self) -> np.ndarray: ...
    @property
    def header(self) -> fits.Header: ...
    @property
    def columns(self) -> dict[str, np.ndarray]: ...
    @property
    def units(self) -> dict[str, str]: ...
    @property
    def column_limits(self) -> dict[str, tuple[float, float]]: ...
    @property
    def obs_id(self) -> str: ...
    @property
    def deadtime_factor(self) -> float: ...
    @property
    def exposure(self) -> float: ...


def is_field(source: dict[str, Any]) -> bool:
    """Whether ``source`` is the whole field of a non-imaging instrument."""
    return str(source.get("region", "")).lower() == "field"


def _select(events: Product, source: dict[str, Any], radius_pix: float | None
            ) -> tuple[_Events, np.ndarray, np.ndarray | None, float, float]:
    """The event list, source and background event masks (``None``: no background), the aperture
    radius (0 for a field) and the source/background area ratio."""
    if is_field(source):
        data = read_event_file(events.local_path)
        return data, np.ones(data.time.size, dtype=bool), None, 0.0, 0.0
    ev = read_events(events.local_path)
    src, bkg, r, ratio = _regions(ev, source, radius_pix)
    return ev, src, bkg, r, ratio


def _regions(ev: EventList, source: dict[str, Any], radius_pix: float | None
             ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Boolean masks of source and background events, the aperture radius and area ratio src/bkg."""
    for key in ("x", "y"):
        if key not in source:
            raise Fatal(f"source dict has no {key!r}", hint="pass a source from detect_sources")
    cx, cy = float(source["x"]), float(source["y"])
    r = float(radius_pix or source.get("aperture_pix") or 4.0)
    r_in, r_out = max(3.0 * r, r + 5.0), max(3.0 * r, r + 5.0) + max(3.0 * r, 10.0)
    d2 = (ev.x - cx) ** 2 + (ev.y - cy) ** 2
    src = d2 <= r * r
    bkg = (d2 >= r_in * r_in) & (d2 <= r_out * r_out)
    excl = [(float(x), float(y), float(rr)) for x, y, rr in source.get("exclude", [])
            if np.hypot(x - cx, y - cy) < r_out + rr]
    for x, y, rr in excl:
        bkg &= (ev.x - x) ** 2 + (ev.y - y) ** 2 > rr * rr
    g = np.arange(-r_out, r_out, 0.25) + 0.125
    gx, gy = np.meshgrid(cx + g, cy + g)
    gd2 = (gx - cx) ** 2 + (gy - cy) ** 2
    cell = (gd2 >= r_in * r_in) & (gd2 <= r_out * r_out)
    for x, y, rr in excl:
        cell &= (gx - x) ** 2 + (gy - y) ** 2 > rr * rr
    bkg_area = float(cell.sum()) * 0.0625
    if bkg_area <= 0:
        raise Fatal(f"source at ({cx:.1f}, {cy:.1f}): the background annulus is entirely excluded")
    return src, bkg, r, np.pi * r * r / bkg_area


def _object_keywords(ev: _Events, source: dict[str, Any], r: float) -> dict[str, Any]:
    keys: dict[str, Any] = {k: ev.header[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "MJDREF",
                                                       "TIMESYS", "TIMEREF", "TIMEUNIT", "TIMEZERO",
                                                       "DATE-OBS") if k in ev.header}
    keys["OBJECT"] = str(source.get("name", f"src{source.get('id', 0)}"))
    if "ra" in source:
        ra, dec = source["ra"], source["dec"]
    elif isinstance(ev, EventList):
        ra, dec = ev.sky(source["x"], source["y"])
    else:
        ra = dec = None
    if ra is not None and dec is not None:
        keys.update({"RA_OBJ": float(np.ravel(ra)[0]), "DEC_OBJ": float(np.ravel(dec)[0]),
                     "EQUINOX": 2000.0, "RADECSYS": str(ev.header.get("RADESYS", "ICRS"))})
    if is_field(source):
        keys["SRC_REG"] = ("FIELD", "every event of the field of view (non-imaging)")
    else:
        keys.update({"SRC_X": float(source["x"]), "SRC_Y": float(source["y"]), "SRC_R": r})
    return keys


def _count(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Events per half-open bin ``[edge_i, edge_i+1)`` (``np.histogram`` closes the last one)."""
    return np.diff(np.searchsorted(np.sort(times), edges, side="left")).astype(float)


def _gti_hdu(ev: _Events) -> fits.BinTableHDU:
    hdu = fits.BinTableHDU.from_columns([fits.Column("START", "D", "s", array=ev.gti[:, 0]),
                                         fits.Column("STOP", "D", "s", array=ev.gti[:, 1])], name="GTI")
    hdu.header["HDUCLASS"], hdu.header["HDUCLAS1"], hdu.header["HDUCLAS2"] = "OGIP", "GTI", "STANDARD"
    return hdu


@task(version="1.2")
def light_curve(events: Product, source: dict[str, Any], bin_s: float = 0.0,
                radius_pix: float | None = None) -> Product:
    """Background-subtracted OGIP light curve of one source.

    Bins of ``bin_s`` seconds from the first good time; ``bin_s = 0`` chooses about 20 source
    counts per bin (16 to 256 bins).  Only events in the good time count (``[START, STOP)``).
    ``FRACEXP`` is the good-time fraction of each bin, and
    ``RATE = (COUNTS - BACKSCAL_RATIO * BKG_COUNTS) / (TIMEDEL * FRACEXP * deadtime)``, ``ERROR``
    its Poisson error (0 where ``FRACEXP = 0``).  ``TIME`` is the bin centre (``TIMEPIXR = 0.5``)
    in the event list's MET (same ``MJDREF``/``TIMEZERO``/``TIMESYS``).  The ``RATE`` extension
    (``HDUCLAS1 = 'LIGHTCURVE'``) also carries ``COUNTS`` and ``BACKV`` (scaled background
    counts) so the transient test can use exact Poisson statistics; a ``GTI`` extension follows.
    A field source (non-imaging instrument) counts every event and has no background
    (``HDUCLAS2 = 'TOTAL'``, ``BACKV = 0``).
    """
    ev, src, bkg, r, ratio = _select(events, source, radius_pix)
    t0, t1 = float(ev.gti[:, 0].min()), float(ev.gti[:, 1].max())
    if bin_s <= 0:
        nbins = int(np.clip(round(src.sum() / 20), 16, 256))
        bin_s = max((t1 - t0) / nbins, float(ev.header.get("TIMEDEL", 0.0)))
    nbins = max(int(np.ceil((t1 - t0) / bin_s - 1e-9)), 1)
    edges = t0 + bin_s * np.arange(nbins + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    good = np.clip(np.minimum(hi, ev.gti[None, :, 1]) - np.maximum(lo, ev.gti[None, :, 0]), 0, None).sum(1)
    fracexp = good / bin_s
    kept = in_gti(ev.time, ev.gti)  # half-open [START, STOP): an event at a GTI's STOP is out
    n_src = _count(ev.time[src & kept], edges)
    n_bkg = np.zeros(nbins) if bkg is None else _count(ev.time[bkg & kept], edges) * ratio
    live = bin_s * fracexp * ev.deadtime_factor
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(live > 0, (n_src - n_bkg) / live, 0.0)
        error = np.where(live > 0, np.sqrt(n_src + n_bkg * ratio) / live, 0.0)
    cols = [fits.Column("TIME", "D", "s", array=0.5 * (edges[:-1] + edges[1:])),
            fits.Column("RATE", "E", "count/s", array=rate),
            fits.Column("ERROR", "E", "count/s", array=error),
            fits.Column("FRACEXP", "E", array=fracexp), fits.Column("COUNTS", "J", "count", array=n_src),
            fits.Column("BACKV", "E", "count", array=n_bkg)]
    hdu = fits.BinTableHDU.from_columns(cols, name="RATE")
    hdr = hdu.header
    hdr.update(_object_keywords(ev, source, r))
    hdr.update({"HDUCLASS": "OGIP", "HDUCLAS1": "LIGHTCURVE",
                "HDUCLAS2": "NET" if bkg is not None else "TOTAL", "HDUCLAS3": "RATE",
                "HDUVERS": "1.1.0", "TIMEDEL": bin_s, "TIMEPIXR": 0.5, "TSTART": t0, "TSTOP": edges[-1],
                "EXPOSURE": float(live.sum()), "BACKSCAL": ratio, "DEADC": ev.deadtime_factor})
    hdr.setdefault("MJDREF", 0.0)
    name = f"{ev.obs_id or 'obs'}_src{source.get('id', 0)}_lc.fits"
    path = context().output(name)
    fits.HDUList([fits.PrimaryHDU(), hdu, _gti_hdu(ev)]).writeto(path, overwrite=True)
    return Product(path, type="ep.l3.lc", obs_id=ev.obs_id or events.obs_id, detector=events.detector,
                   attributes={"source_id": source.get("id"), "timedel": bin_s, "nbins": nbins})


@task(version="1.2")
def spectrum(events: Product, source: dict[str, Any], radius_pix: float | None = None,
             energy_bin_ev: float = 10.0) -> Product:
    """OGIP PHA type I spectrum of one source, with its background spectrum in a second HDU.

    Channels are the ``PI`` column (``TLMIN``..``TLMAX``, ``CHANTYPE = 'PI'``); a list without
    ``PI`` is binned in ``ENERGY`` (``energy_bin_ev`` eV channels from 0, an ``EBOUNDS``
    extension gives their bounds, ``ENERGY`` in eV or keV per ``TUNIT``); one with neither uses
    its ``PHA`` channels (``CHANTYPE = 'PHA'``, e.g. RXTE PCA).  A field source (non-imaging
    instrument) has every event in ``SPECTRUM`` and no ``BACKGROUND`` HDU.  ``SPECTRUM`` holds
    ``CHANNEL``/``COUNTS`` (every source event in the aperture lands in exactly one channel),
    ``BACKSCAL`` is the aperture area (sky pixels^2); the ``BACKGROUND`` HDU (``HDUCLAS2 = 'BKG'``)
    has the annulus counts and area, so ``BACKSCAL`` ratios scale it.
    """
    ev, src, bkg, r, ratio = _select(events, source, radius_pix)
    channels, values, chantype, ebounds = _channels(ev, energy_bin_ev)
    edges = np.append(channels, channels[-1] + 1) - 0.5
    area_src = np.pi * r * r if bkg is not None else 1.0
    hdus: list[fits.PrimaryHDU | fits.BinTableHDU] = [fits.PrimaryHDU()]
    parts = [("SPECTRUM", src, area_src, "TOTAL")]
    if bkg is not None:
        parts.append(("BACKGROUND", bkg, area_src / ratio, "BKG"))
    for extname, mask, backscal, cls2 in parts:
        counts = np.histogram(values[mask], edges)[0]
        hdu = fits.BinTableHDU.from_columns([fits.Column("CHANNEL", "J", array=channels),
                                             fits.Column("COUNTS", "J", "count", array=counts)], name=extname)
        hdu.header.update(_object_keywords(ev, source, r))
        hdu.header.update({
            "HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "HDUCLAS2": cls2, "HDUCLAS3": "COUNT",
            "HDUCLAS4": "TYPE:I", "HDUVERS": "1.2.1", "EXPOSURE": ev.exposure, "BACKSCAL": backscal,
            "AREASCAL": 1.0, "CORRSCAL": 0.0, "BACKFILE": "none", "CORRFILE": "none",
            "RESPFILE": "none", "ANCRFILE": "none", "FILTER": str(ev.header.get("FILTER", "none")),
            "DETCHANS": len(channels), "TLMIN1": int(channels[0]), "TLMAX1": int(channels[-1]),
            "CHANTYPE": chantype, "POISSERR": True, "SYS_ERR": 0.0, "GROUPING": 0, "QUALITY": 0})
        hdus.append(hdu)
    if ebounds is not None:
        hdus.append(ebounds)
    path = context().output(f"{ev.obs_id or 'obs'}_src{source.get('id', 0)}_spec.pha")
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Product(path, type="ep.l3.spectrum", obs_id=ev.obs_id or events.obs_id, detector=events.detector,
                   attributes={"source_id": source.get("id"), "counts": int(src.sum())})


def _channels(ev: _Events, energy_bin_ev: float
              ) -> tuple[np.ndarray, np.ndarray, str, fits.BinTableHDU | None]:
    """Spectral channels, each event's channel, ``CHANTYPE`` and (for energies) an ``EBOUNDS`` HDU:
    ``PI`` if present, else ``ENERGY`` binned, else ``PHA`` (e.g. RXTE PCA lists)."""
    name = "PI" if "PI" in ev.columns else "ENERGY" if "ENERGY" in ev.columns else "PHA"
    if name not in ev.columns:
        raise Fatal("the event list has none of the columns PI, ENERGY or PHA",
                    hint="a spectrum needs event energies or pulse heights", column="PI")
    if name != "ENERGY":
        values = ev.columns[name]
        lo, hi = ev.column_limits.get(name, (float(np.nanmin(values, initial=0)),
                                             float(np.nanmax(values, initial=0))))
        return np.arange(int(lo), int(hi) + 1), values, name, None
    raw = ev.columns["ENERGY"]
    unit = ev.units.get("ENERGY", "").lower()
    kev = unit == "kev" or (unit != "ev" and np.nanmax(raw, initial=0) < 200)
    energy = raw * (1000.0 if kev else 1.0)  # keV -> eV
    channels = np.arange(int(np.ceil((float(np.nanmax(energy, initial=0)) + 1) / energy_bin_ev)))
    e_lo = channels * energy_bin_ev / 1000.0
    ebounds = fits.BinTableHDU.from_columns(
        [fits.Column("CHANNEL", "J", array=channels), fits.Column("E_MIN", "E", "keV", array=e_lo),
         fits.Column("E_MAX", "E", "keV", array=e_lo + energy_bin_ev / 1000.0)], name="EBOUNDS")
    return channels, np.floor(energy / energy_bin_ev), "PI", ebounds


MIN_CONTRAST = 5.0
"""A flare, not the modulation of a variable source: the net rate in the flaring window must be at
least this many times the net rate outside it (a sinusoid of 80 % amplitude gives ~3; measured on
the simulator's flares: 11-15)."""


@task(version="1.2")
def transient_test(lc: Product, threshold_sigma: float = 5.0, max_window: int = 0,
                   min_contrast: float = MIN_CONTRAST) -> dict[str, Any]:
    """Is the source a transient (a flare) in this light curve?

    Test: under the constant-source hypothesis the source-aperture counts in a window of
    consecutive good bins are Binomial(total counts, window exposure / total exposure).  Every
    window of 1, 2, 4, ... bins (up to ``max_window``, default a quarter of the bins) is tested
    for an excess (exact binomial upper tail, ``scipy.special.bdtrc``); the smallest p-value is
    corrected for the number of windows tried and turned into a Gaussian ``significance``.
    ``is_transient`` when it reaches ``threshold_sigma`` *and* the window's net rate is at least
    ``min_contrast`` times the net rate outside it (``contrast``; infinite when nothing is left
    outside): a significant but mild modulation of a known variable source is not a transient.
    A chi-square constancy test of the
    binned counts is reported alongside (``chi2``, ``dof``, ``chi2_pvalue``).

    Returns ``is_transient``, ``significance`` (sigma, post-trials), ``peak_time`` (MET s, window
    centre), ``peak_time_utc`` (ISO, from ``MJDREF``/``TIMESYS``), ``peak_time_tdb`` (ISO),
    ``peak_rate`` and ``mean_rate`` (net, count/s), ``window_s``, ``contrast``, ``chi2``, ``dof``,
    ``chi2_pvalue``, and from the light curve's header ``telescope``, ``instrument`` and
    ``timeref`` (``LOCAL``, or ``SOLARSYSTEM`` for barycentred times).
    """
    with fits.open(lc.local_path) as hdul:
        if "RATE" not in hdul:
            raise Fatal(f"{lc.local_path.name} has no RATE extension",
                        hint="pass a light curve made by light_curve")
        data, hdr = hdul["RATE"].data, hdul["RATE"].header
        names = [n.upper() for n in data.columns.names]
        missing = [c for c in ("TIME", "FRACEXP", "COUNTS", "BACKV") if c not in names]
        if missing:
            raise Fatal(f"{lc.local_path.name}: RATE extension lacks column(s) {', '.join(missing)}")
        good = np.asarray(data["FRACEXP"], float) > 0.1
        time = np.asarray(data["TIME"], float)[good]
        counts = np.asarray(data["COUNTS"], float)[good]
        back = np.asarray(data["BACKV"], float)[good]
        live = float(hdr["TIMEDEL"]) * np.asarray(data["FRACEXP"], float)[good] * float(hdr.get("DEADC", 1.0))
        mjdref, timesys = float(hdr.get("MJDREF", 0.0)), str(hdr.get("TIMESYS", "TT")).strip().lower()
        timedel = float(hdr["TIMEDEL"])
        origin = {"telescope": str(hdr.get("TELESCOP", "")).strip(),
                  "instrument": str(hdr.get("INSTRUME", "")).strip(),
                  "timeref": str(hdr.get("TIMEREF", "LOCAL")).strip().upper() or "LOCAL"}
    n, total, exposure = counts.size, float(counts.sum()), float(live.sum())
    mean_rate = (total - float(back.sum())) / exposure if exposure > 0 else 0.0
    result: dict[str, Any] = {"is_transient": False, "significance": 0.0, "peak_time": None,
                              "peak_time_utc": None, "peak_rate": 0.0, "mean_rate": mean_rate,
                              "window_s": 0.0, "contrast": 0.0, "chi2": 0.0, "dof": max(n - 1, 0),
                              "chi2_pvalue": 1.0, "nbins": n, "peak_time_tdb": None, **origin}
    if n < 2 or total <= 0:
        return result
    cum_c, cum_e, cum_b = (np.concatenate([[0.0], np.cumsum(a)]) for a in (counts, live, back))
    best: tuple[float, int, int] = (0.0, 0, 1)
    trials = 0
    width = 1
    while width <= max(max_window or n // 4, 1) and width < n:
        c = cum_c[width:] - cum_c[:-width]
        f = (cum_e[width:] - cum_e[:-width]) / exposure
        p = special.bdtrc(np.maximum(c - 1, 0).astype(np.int64), round(total), f)
        with np.errstate(divide="ignore"):  # where the binomial tail underflows: the Poisson limit
            logp = np.where(p > 0, np.log(np.maximum(p, 1e-320)), poisson_logsf(c, total * f))
        logp = np.where(c > 0, logp, 0.0)
        k = int(np.argmin(logp))
        if logp[k] < best[0]:
            best = (float(logp[k]), k, width)
        trials += c.size
        width *= 2
    logp_min, k, width = best
    sig = float(sigma_from_logp(post_trials_logp(np.array(logp_min), float(trials))))
    w_counts, w_live = cum_c[k + width] - cum_c[k], cum_e[k + width] - cum_e[k]
    w_back = cum_b[k + width] - cum_b[k]
    peak_time = 0.5 * (time[k] + time[k + width - 1])
    mu = total * live / exposure
    chi2 = float(np.sum((counts - mu) ** 2 / np.maximum(mu, 1e-12)))
    inside = (w_counts - w_back) / w_live if w_live > 0 else 0.0
    rest = exposure - w_live
    outside = (total - w_counts - (float(back.sum()) - w_back)) / rest if rest > 0 else 0.0
    contrast = inside / outside if outside > 0 else (float("inf") if inside > 0 else 0.0)
    result.update({
        "is_transient": bool(sig >= threshold_sigma and contrast >= min_contrast), "significance": sig,
        "contrast": contrast, "peak_time": float(peak_time),
        "peak_time_utc": Time(mjdref + peak_time / 86400.0, format="mjd", scale=timesys).utc.isot,
        "peak_time_tdb": Time(mjdref + peak_time / 86400.0, format="mjd", scale=timesys).tdb.isot,
        "peak_rate": float((w_counts - w_back) / w_live) if w_live > 0 else 0.0,
        "window_s": float(width * timedel), "chi2": chi2,
        "chi2_pvalue": float(special.chdtrc(n - 1, chi2)),
    })
    return result
