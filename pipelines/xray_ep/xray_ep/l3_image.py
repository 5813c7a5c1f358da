"""L2 -> L3 imaging: a sky counts image and a sliding-cell source detection.

Both tasks read event lists written to OGIP/HEASARC conventions, never a private format:

* an ``EVENTS`` binary table with columns ``TIME``, ``X``, ``Y`` (sky pixels, FITS 1-based:
  pixel ``i`` covers ``[i - 0.5, i + 0.5)``) and ``PI`` and/or ``ENERGY`` (case-insensitive);
* the celestial WCS of the sky pixels in the column keywords ``TCTYPn``, ``TCRVLn``, ``TCRPXn``,
  ``TCDLTn`` (and optionally ``TCUNIn``) where ``n`` is the column number of ``X`` and ``Y``;
  ``RADESYS``/``EQUINOX`` if present;
* times, good-time intervals, energies and the observation keywords as ``xray_ep.evtfile`` reads
  them (``TIMEZERO`` applied, every GTI extension intersected, ``MJDREF`` or ``MJDREFI`` + ``MJDREFF``).

The same code runs on the simulator's L2 lists and on a real Chandra ACIS ``evt2`` file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from scipy import ndimage, special
from scipy.spatial import cKDTree

from skyweave import Fatal, Product, context, task
from xray_ep.evtfile import read_event_file

WCS_KEYS = ("TCTYP", "TCRVL", "TCRPX", "TCDLT")
MAX_IMAGE_PIXELS = 4096 * 4096
SCALES = (1, 2, 4, 8)
"""Half-widths (image pixels) of the square detection cells: 3x3, 5x5, 9x9, 17x17."""


@dataclass(frozen=True)
class EventList:
    """The parts of an L2 event list the L3 stages use (arrays are float64, times in MET s)."""

    path: Path
    time: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pi: np.ndarray | None
    energy: np.ndarray | None
    wcs: WCS
    """Celestial WCS of the sky pixels, FITS convention (use ``origin=1`` with ``X``/``Y``)."""
    header: fits.Header
    """The ``EVENTS`` header merged over the primary header (``EVENTS`` wins)."""
    gti: np.ndarray
    """``(n, 2)`` good-time intervals clipped to ``[TSTART, TSTOP]``."""
    column_limits: dict[str, tuple[float, float]]
    """``TLMINn``/``TLMAXn`` per upper-case column name, when given."""
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    """The columns ``xray_ep.evtfile`` reads (``X``, ``Y``, ``PI``, ``PHA``, ``ENERGY``), by name."""
    units: dict[str, str] = field(default_factory=dict)
    """``TUNITn`` per upper-case column name."""

    @property
    def obs_id(self) -> str:
        return str(self.header.get("OBS_ID", "")).strip()

    @property
    def deadtime_factor(self) -> float:
        """Live fraction: ``DEADC`` (XMM/Swift) or ``DTCOR`` (Chandra), else 1."""
        return float(self.header.get("DEADC", self.header.get("DTCOR", 1.0)))

    @property
    def exposure(self) -> float:
        """Live exposure (s): total good time times the dead-time factor."""
        return float(np.sum(self.gti[:, 1] - self.gti[:, 0])) * self.deadtime_factor

    def pixel_scale_arcsec(self) -> float:
        return float(abs(self.wcs.wcs.cdelt[0]) * 3600.0)

    def sky(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(RA, Dec) in degrees of sky pixel positions (FITS 1-based)."""
        world = self.wcs.all_pix2world(np.atleast_1d(x), np.atleast_1d(y), 1)
        lng, lat = self.wcs.wcs.lng, self.wcs.wcs.lat
        return np.asarray(world[lng], dtype=float), np.asarray(world[lat], dtype=float)


def read_events(path: Path | str) -> EventList:
    """Read an OGIP event list with sky pixels (``xray_ep.evtfile`` reads times, GTIs, energies);
    a missing ``X``/``Y`` column or WCS keyword is a ``Fatal`` naming it."""
    ev = read_event_file(path, need=("X", "Y"))
    wcs = _column_wcs(ev.header, ev.column_numbers["X"], ev.column_numbers["Y"], ev.path.name)
    return EventList(path=ev.path, time=ev.time, x=ev.columns["X"], y=ev.columns["Y"],
                     pi=ev.columns.get("PI"), energy=ev.columns.get("ENERGY"), wcs=wcs, header=ev.header,
                     gti=ev.gti, column_limits=ev.column_limits, columns=ev.columns, units=ev.units)


def _column_wcs(header: fits.Header, nx: int, ny: int, name: str) -> WCS:
    """The celestial WCS of the sky pixel columns number ``nx``/``ny`` from their TC* keywords."""
    values: dict[str, list[Any]] = {}
    for key in WCS_KEYS:
        values[key] = []
        for n in (nx, ny):
            if f"{key}{n}" not in header:
                raise Fatal(f"{name}: missing WCS keyword {key}{n} for sky column "
                            f"{'X' if n == nx else 'Y'}",
                            hint="L2 event lists must carry TCTYPn/TCRVLn/TCRPXn/TCDLTn for X and Y",
                            keyword=f"{key}{n}")
            values[key].append(header[f"{key}{n}"])
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [str(v) for v in values["TCTYP"]]
    wcs.wcs.crval = [float(v) for v in values["TCRVL"]]
    wcs.wcs.crpix = [float(v) for v in values["TCRPX"]]
    wcs.wcs.cdelt = [float(v) for v in values["TCDLT"]]
    wcs.wcs.cunit = [str(header.get(f"TCUNI{n}", "deg")).strip() or "deg" for n in (nx, ny)]
    if "RADESYS" in header:
        wcs.wcs.radesys = str(header["RADESYS"]).strip()
    if "EQUINOX" in header:
        wcs.wcs.equinox = float(header["EQUINOX"])
    if wcs.wcs.lng < 0 or wcs.wcs.lat < 0:
        raise Fatal(f"{name}: TCTYP{nx}/TCTYP{ny} = {values['TCTYP']} is not a celestial projection",
                    hint="expected e.g. 'RA---TAN' and 'DEC--TAN'", keyword=f"TCTYP{nx}")
    return wcs


# -- statistics ---------------------------------------------------------------------------------

def sigma_from_logp(logp: np.ndarray) -> np.ndarray:
    """One-sided Gaussian-equivalent significance of (natural) log p-values, valid to p ~ 1e-10000."""
    shape = np.shape(logp)
    logp = np.minimum(np.atleast_1d(np.asarray(logp, dtype=float)).ravel(), 0.0)
    out = np.zeros_like(logp)
    normal = logp > -700.0
    out[normal] = -special.ndtri(np.exp(logp[normal]))
    tiny = ~normal
    if np.any(tiny):  # Newton on log_ndtr(-s) = logp, starting from the asymptote
        s = np.sqrt(-2.0 * logp[tiny])
        for _ in range(8):
            f = special.log_ndtr(-s) - logp[tiny]
            dfds = -np.exp(-0.5 * s * s - 0.5 * np.log(2 * np.pi) - special.log_ndtr(-s))
            s = s - f / dfds
        out[tiny] = s
    return np.asarray(np.maximum(out, 0.0).reshape(shape))


def poisson_logsf(n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``log P(N >= n | mu)`` for Poisson ``N``: the regularised lower incomplete gamma ``P(n, mu)``.

    Where that underflows, the likelihood-ratio (Cash) significance
    ``sqrt(2 (n ln(n/mu) - (n - mu)))`` gives the tail through ``log_ndtr``.
    """
    n0, mu0 = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(mu, dtype=float))
    n, mu = np.atleast_1d(n0).ravel(), np.maximum(np.atleast_1d(mu0).ravel(), 1e-12)
    pos = n > 0
    with np.errstate(divide="ignore"):
        p = np.where(pos, special.gammainc(np.where(pos, n, 1.0), mu), 1.0)
        out = np.asarray(np.log(p), dtype=float)
    under = pos & (p < 1e-300)
    if np.any(under):
        nn, mm = n[under], mu[under]
        cash = np.sqrt(np.maximum(2.0 * (nn * np.log(nn / mm) - (nn - mm)), 0.0))
        out[under] = special.log_ndtr(-cash)
    return out.reshape(n0.shape)


def post_trials_logp(logp: np.ndarray, trials: float) -> np.ndarray:
    """``log(1 - (1 - p)^trials)``, computed without cancellation."""
    p = np.exp(np.asarray(logp, dtype=float))
    small = np.asarray(logp) < -30
    with np.errstate(divide="ignore"):
        exact = np.log(-np.expm1(trials * np.log1p(-np.minimum(p, 1 - 1e-16))))
    return np.asarray(np.where(small, np.asarray(logp) + np.log(max(trials, 1.0)), np.minimum(exact, 0.0)))


def poisson_significance(n: np.ndarray | float, mu: np.ndarray | float, trials: float = 1.0) -> np.ndarray:
    """Gaussian-equivalent significance of ``n`` counts over an expected ``mu``, after ``trials``."""
    return sigma_from_logp(post_trials_logp(poisson_logsf(np.asarray(n), np.asarray(mu)), trials))


# -- the image ----------------------------------------------------------------------------------

def image_grid(ev: EventList, binsize: int, margin: int = 8) -> tuple[float, float, int, int]:
    """Lower edges ``(x0, y0)`` (sky pixels) and shape ``(nx, ny)`` of an image covering the events.

    Bin edges are aligned on the sky pixel edges (``TLMIN`` of the column, else 0.5), so binsize 1
    reproduces the instrument's sky pixels exactly.
    """
    if ev.x.size == 0:
        raise Fatal(f"{ev.path.name}: the event list is empty, nothing to image")
    edges = []
    for name, v in (("X", ev.x), ("Y", ev.y)):
        base = ev.column_limits.get(name, (0.5, 0.0))[0]
        lo = base + binsize * (np.floor((v.min() - base) / binsize) - margin)
        n = int(np.ceil((v.max() - lo) / binsize)) + margin
        edges.append((float(lo), n))
    (x0, nx), (y0, ny) = edges
    if nx * ny > MAX_IMAGE_PIXELS:
        raise Fatal(f"{ev.path.name}: a {nx}x{ny} image at binsize {binsize} is too large",
                    hint="use a larger binsize")
    return x0, y0, nx, ny


def image_wcs(ev: EventList, x0: float, y0: float, binsize: int) -> WCS:
    """Celestial WCS of the image: image pixel ``i`` (1-based) is sky pixel ``x0 + (i - 0.5) b``."""
    wcs = ev.wcs.deepcopy()
    wcs.wcs.crpix = [(ev.wcs.wcs.crpix[0] - x0) / binsize + 0.5, (ev.wcs.wcs.crpix[1] - y0) / binsize + 0.5]
    wcs.wcs.cdelt = [ev.wcs.wcs.cdelt[0] * binsize, ev.wcs.wcs.cdelt[1] * binsize]
    return wcs


@task(version="1.2")
def make_image(events: Product, binsize: int = 1) -> Product:
    """Counts image of an L2 event list in sky pixels, ``binsize`` sky pixels per image pixel.

    The primary HDU holds the counts (int32, ``BUNIT = 'count'``) with the celestial WCS derived
    from the event list's TC* keywords (so ds9/astropy show RA/Dec right), the ds9 *physical*
    system (``LTV``/``LTM`` and the alternate WCS ``P``) mapping back to sky pixels, and the
    observation keywords (``OBS_ID``, ``TSTART``, ``TSTOP``, ``EXPOSURE``, ``MJDREF``...).
    """
    if binsize < 1:
        raise Fatal(f"binsize must be a positive integer, got {binsize}")
    ev = read_events(events.local_path)
    x0, y0, nx, ny = image_grid(ev, binsize)
    counts, _, _ = np.histogram2d(ev.y, ev.x, bins=[ny, nx],
                                  range=[[y0, y0 + ny * binsize], [x0, x0 + nx * binsize]])
    header = image_wcs(ev, x0, y0, binsize).to_header()
    for key in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "DATE-OBS", "DATE-END", "MJDREF",
                "TIMESYS", "TIMEUNIT", "TSTART", "TSTOP"):
        if key in ev.header:
            header[key] = ev.header[key]
    header["EXPOSURE"] = (ev.exposure, "[s] live exposure of the good time intervals")
    if "MJDREF" in header:  # the dates astropy's datfix would otherwise derive (with a warning)
        mjdref = float(header["MJDREF"])
        header["DATEREF"] = Time(mjdref, format="mjd", scale="tt").isot
        for key, met in (("MJD-OBS", "TSTART"), ("MJD-END", "TSTOP")):
            if met in header:
                header[key] = mjdref + float(header[met]) / 86400.0
    header["BUNIT"] = "count"
    header["HDUCLASS"], header["HDUCLAS1"] = "OGIP", "IMAGE"
    header["BINSIZE"] = (binsize, "sky pixels per image pixel")
    header["WCSNAMEP"] = "PHYSICAL"
    for axis, (lo, name) in enumerate(((x0, "x"), (y0, "y")), start=1):
        header[f"LTM{axis}_{axis}"] = 1.0 / binsize
        header[f"LTV{axis}"] = 0.5 - lo / binsize
        header[f"CTYPE{axis}P"] = name
        header[f"CRPIX{axis}P"] = 0.5
        header[f"CRVAL{axis}P"] = lo
        header[f"CDELT{axis}P"] = float(binsize)
    header["EVFILE"] = (events.local_path.name[:60], "event list imaged")
    path = context().output(f"{ev.obs_id or events.local_path.stem}_image_b{binsize}.fits")
    fits.PrimaryHDU(counts.astype(np.int32), header=header).writeto(path, overwrite=True)
    return Product(path, type="ep.l3.image", obs_id=ev.obs_id or events.obs_id,
                   detector=events.detector,
                   attributes={"binsize": binsize, "x0": x0, "y0": y0, "shape": [ny, nx]})



# -- detection ----------------------------------------------------------------------------------

def box_sum(a: np.ndarray, h: int) -> np.ndarray:
    """Sum of ``a`` over the ``(2h+1)^2`` box centred on each pixel (zero outside), by integral image."""
    k = 2 * h + 1
    c = np.cumsum(np.cumsum(np.pad(np.asarray(a, dtype=float), ((h + 1, h), (h + 1, h))), 0), 1)
    return np.asarray(c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k])


def local_maxima(a: np.ndarray) -> np.ndarray:
    """Pixels not exceeded by any of their 8 neighbours."""
    return np.asarray(a >= ndimage.maximum_filter(a, size=3, mode="constant", cval=-np.inf))


def _excess_significance(n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``poisson_significance(n, mu)`` where ``n > mu``, 0 elsewhere (where it is ~0 anyway)."""
    out = np.zeros(n.shape)
    up = n > mu
    out[up] = sigma_from_logp(poisson_logsf(n[up], mu[up]))
    return out


@dataclass(frozen=True)
class CellMaps:
    """Result of the sliding-cell search on a counts image."""

    background: np.ndarray
    """Background counts per image pixel (source-masked local mean)."""
    significance: np.ndarray
    """Pre-trials significance per cell scale, shape ``(len(SCALES), ny, nx)``."""
    trials: float
    """Number of independent cells searched (for the trials correction)."""


def cell_maps(counts: np.ndarray, bkg_half: int = 32, iterations: int = 3,
              exposure: np.ndarray | None = None) -> CellMaps:
    """Multi-scale sliding-cell significance maps with an iteratively source-masked background.

    The background of a pixel is the mean count of the unmasked *footprint* pixels (pixels within
    4 of an event, i.e. the exposed area) in a ``(2 bkg_half + 1)^2`` box; pixels near the two
    smallest cells more than 3 sigma above it are masked (compact sources; extended emission stays
    part of the background of point sources) and the background recomputed (``iterations`` times).  Each
    cell's counts are compared with the background expected in it by the exact Poisson tail.

    With an ``exposure`` map (seconds per pixel, same shape) the exposed area is where it is
    positive and the background is a *rate*: the local mean of counts per exposure-second over the
    unmasked exposed pixels, times each pixel's exposure.  Chip gaps, chip edges swept by the
    attitude drift and Earth-occultation holes then lower the expected background exactly where
    they lower the counts, instead of being averaged into it (which is what makes false sources
    along edges when the footprint is guessed from the events).
    """
    if exposure is not None and exposure.shape != counts.shape:
        raise Fatal(f"exposure map shape {exposure.shape} differs from the counts image {counts.shape}")
    if exposure is None:
        footprint = box_sum(counts > 0, 4) > 0
        weight = footprint.astype(float)
    else:
        weight = np.where(exposure > 0, exposure / max(float(exposure.max()), 1e-12), 0.0)
        footprint = weight > 0
    n_foot = max(int(footprint.sum()), 1)
    global_mean = float(counts[footprint].sum()) / max(float(weight.sum()), 1e-12)
    mask = np.zeros(counts.shape, dtype=bool)
    cells = [box_sum(counts, h) for h in SCALES]
    for it in range(iterations):
        valid = footprint & ~mask
        wvalid = box_sum(weight * valid, bkg_half)
        density = np.where(wvalid > 0.1 * (2 * bkg_half + 1) ** 2,
                           box_sum(counts * valid, bkg_half) / np.maximum(wvalid, 1e-12), global_mean)
        if exposure is None:
            bkg = np.maximum(density, 0.05 * global_mean + 1e-9)
        else:  # the floor (as without a map) keeps a stray event off the chips from being a source
            bkg = np.maximum(density * weight, 0.05 * global_mean) + 1e-9
        last = it == iterations - 1  # only the two smallest cells make the mask before the end
        sig = np.stack([_excess_significance(c, box_sum(bkg, h) if exposure is not None
                                             else bkg * (2 * h + 1) ** 2) if last or k < 2
                        else np.zeros(counts.shape)
                        for k, (h, c) in enumerate(zip(SCALES, cells, strict=True))])
        mask = np.zeros(counts.shape, dtype=bool)
        for h, s in zip(SCALES[:2], sig, strict=False):  # compact sources only: diffuse light is background
            mask |= box_sum(s > 3.0, 2 * h + 2) > 0
    trials = float(sum(n_foot / (2 * h + 1) ** 2 for h in SCALES))
    return CellMaps(bkg, sig, trials)


def _centroid(x: np.ndarray, y: np.ndarray, start: tuple[float, float], r: float, steps: int = 6
              ) -> tuple[float, float]:
    """Iterated mean position of the events within ``r`` of the current centre."""
    cx, cy = start
    for _ in range(steps):
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
        if not np.any(inside):
            break
        nx, ny = float(x[inside].mean()), float(y[inside].mean())
        if abs(nx - cx) < 1e-3 and abs(ny - cy) < 1e-3:
            break
        cx, cy = nx, ny
    return cx, cy


def _image_binning(image: Path) -> tuple[float, float, float]:
    """``(x0, y0, binsize)`` of an image written by ``make_image`` (its physical WCS ``P``)."""
    header = fits.getheader(image)
    try:
        return float(header["CRVAL1P"]), float(header["CRVAL2P"]), float(header["CDELT1P"])
    except KeyError as exc:
        raise Fatal(f"{image.name}: missing physical WCS keyword {exc.args[0]}",
                    hint="detect_sources needs an image made by make_image") from exc


@dataclass(frozen=True)
class Psf:
    """A circular core + halo Gaussian PSF in sky pixels (``PSFMODEL = 'GAUSS2'`` keywords)."""

    core: float
    halo: float
    halo_fraction: float

    @classmethod
    def from_header(cls, header: fits.Header, pixel_arcsec: float) -> Psf | None:
        """The PSF described by the event list's header, or ``None`` (unknown: e.g. Chandra files)."""
        if str(header.get("PSFMODEL", "")).strip().upper() != "GAUSS2":
            return None
        try:
            return cls(float(header["PSFSIG1"]) / pixel_arcsec, float(header["PSFSIG2"]) / pixel_arcsec,
                       float(header.get("PSFFRAC2", 0.0)))
        except KeyError as exc:
            raise Fatal(f"PSFMODEL = 'GAUSS2' without keyword {exc.args[0]}",
                        hint="GAUSS2 needs PSFSIG1, PSFSIG2 (arcsec) and PSFFRAC2") from exc

    def encircled(self, r: float | np.ndarray) -> np.ndarray:
        """Fraction of a source's photons within ``r`` sky pixels of it."""
        r2 = np.asarray(r, dtype=float) ** 2
        f = self.halo_fraction
        return (1 - f) * -np.expm1(-r2 / (2 * self.core**2)) + f * -np.expm1(-r2 / (2 * self.halo**2))

    def radius(self, fraction: float) -> float:
        """Radius (sky pixels) enclosing ``fraction`` of the photons (bisection)."""
        lo, hi = 0.0, 10.0 * max(self.core, self.halo)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.encircled(mid) < fraction else (lo, mid)
        return 0.5 * (lo + hi)

    def mass_in_circle(self, dx: float, dy: float, r: float, n: int = 24) -> float:
        """Fraction of a source's photons within the circle of radius ``r`` centred ``(dx, dy)``
        away from it (midpoint rule on an ``n x n`` grid)."""
        g = (np.arange(n) + 0.5) / n * 2 * r - r
        gx, gy = np.meshgrid(g, g)
        inside = gx**2 + gy**2 <= r * r
        d2 = (gx + dx) ** 2 + (gy + dy) ** 2
        f = self.halo_fraction
        density = ((1 - f) * np.exp(-d2 / (2 * self.core**2)) / (2 * np.pi * self.core**2)
                   + f * np.exp(-d2 / (2 * self.halo**2)) / (2 * np.pi * self.halo**2))
        return float(np.sum(density * inside)) * (2 * r / n) ** 2


PSF_APERTURE_FRACTION = 0.8
"""With a known PSF, source apertures enclose this fraction of its photons (then corrected)."""


@task(version="1.2")
def detect_sources(image: Product, events: Product, threshold_sigma: float = 5.0,
                   max_sources: int = 50, expmap: Product | list[Product] | None = None
                   ) -> list[dict[str, Any]]:
    """Find the point sources of an observation (how many is only known now: the fan-out).

    Algorithm (a multi-scale sliding-cell detector, like CIAO ``celldetect``):

    1. square cells of 3, 5, 9 and 17 image pixels slide over the counts image; each cell's
       counts are compared with the local background (``cell_maps``) by the exact Poisson tail
       probability, giving a significance map (best scale per pixel);
    2. local maxima of that map are candidates, strongest first;
    3. each candidate is re-centred on its events (iterated centroid within the best cell), its
       counts are taken in a circular aperture (twice the radius of the circle of the best cell's
       area, at least 2 sky pixels) and compared with the background expected in the aperture;
    4. it is kept if that Poisson significance, **after a trials correction** for the number of
       independent cells searched, reaches ``threshold_sigma`` and it is not within an already
       accepted source's aperture.

    Each source is a JSON-able dict: ``id``, ``name``, ``x``, ``y`` (sky pixels, FITS 1-based),
    ``ra``, ``dec`` (deg, from the event list's WCS), ``pos_err_arcsec`` (statistical, 1 sigma),
    ``counts`` (in the aperture), ``background`` (expected in the aperture), ``net_counts``,
    ``rate`` (net counts per live second), ``significance`` (pre-trials, sigma),
    ``significance_post_trials``, ``aperture_pix``, ``obs_id`` and ``exclude`` (the other
    sources' ``[x, y, radius]``, to keep them out of background regions).

    Two optional inputs make it right on a wide-field mosaic:

    * ``expmap`` (an exposure map on the image grid, e.g. ``l2.exposure_map``): the background is
      a rate times the exposure of each pixel (see ``cell_maps``), ``rate`` uses the exposure at the
      source (``exposure`` in the dict), and only exposed pixels count as trials;
    * a PSF in the event list's header (``PSFMODEL = 'GAUSS2'``, see ``Psf``): apertures enclose
      ``PSF_APERTURE_FRACTION`` of the PSF whatever the cell that found the source, ``net_counts``
      and ``rate`` are corrected to the whole PSF (``eef`` in the dict), and the expected counts
      of a candidate include the PSF wings of the brighter sources already accepted (``wings``),
      so a bright source's halo is not taken for more sources.

    Without them (e.g. a Chandra file) the aperture follows the cell and no correction is made.
    ``expmap`` may also be a list of at most one map (a workflow's ``gather`` of an exposure map
    stage that may have been skipped): ``[]`` is no map.
    """
    if isinstance(expmap, list):
        if len(expmap) > 1:
            raise Fatal(f"detect_sources takes one exposure map, got {len(expmap)}")
        expmap = expmap[0] if expmap else None
    ev = read_events(events.local_path)
    x0, y0, b = _image_binning(image.local_path)
    counts = np.asarray(fits.getdata(image.local_path), dtype=float)
    exposure = None
    if expmap is not None:
        exposure = np.asarray(fits.getdata(expmap.local_path), dtype=float)
        if _image_binning(expmap.local_path) != (x0, y0, b):
            raise Fatal(f"{expmap.local_path.name} is not on the grid of {image.local_path.name}",
                        hint="make the exposure map from the same image")
    maps = cell_maps(counts, exposure=exposure)
    psf = Psf.from_header(ev.header, ev.pixel_scale_arcsec())
    tree = cKDTree(np.column_stack([ev.x, ev.y])) if ev.x.size else None
    sources: list[dict[str, Any]] = []
    for h, sig in zip(SCALES, maps.significance, strict=True):  # smallest cells first
        iy, ix = np.nonzero(local_maxima(sig) & (sig >= max(threshold_sigma - 2.0, 2.0)))
        for k in np.argsort(-sig[iy, ix], kind="stable")[: 20 * max_sources]:
            if len(sources) >= max_sources:
                break
            source = _measure(ev, maps, (x0, y0, b), (int(ix[k]), int(iy[k])), h, accepted=sources,
                              psf=psf, exposure=exposure, tree=tree)
            if source is not None and source["significance_post_trials"] >= threshold_sigma:
                sources.append(source)
    sources.sort(key=lambda s: -s["net_counts"])
    for i, s in enumerate(sources, start=1):
        s["id"] = i
        s["name"] = _iau_name(s["ra"], s["dec"])
        s["exclude"] = [[o["x"], o["y"], 1.5 * o["aperture_pix"]] for o in sources if o is not s]
    return sources


def _measure(ev: EventList, maps: CellMaps, grid: tuple[float, float, float], pixel: tuple[int, int],
             h: int, *, accepted: list[dict[str, Any]], psf: Psf | None = None,
             exposure: np.ndarray | None = None, tree: cKDTree | None = None) -> dict[str, Any] | None:
    """Centroid, aperture photometry and significance of the candidate cell at image ``pixel``.

    ``None`` if it falls within (or its cell overlaps) the aperture of an ``accepted`` source, or
    lies on an unexposed pixel of the ``exposure`` map.
    """
    x0, y0, b = grid
    i, j = pixel
    cell_r = max(2.0 * (2 * h + 1) * b / np.sqrt(np.pi), 2.0)
    r_ap = cell_r if psf is None else max(psf.radius(PSF_APERTURE_FRACTION), 2.0)
    start = (x0 + (i + 0.5) * b, y0 + (j + 0.5) * b)
    r_c = max((h + 0.5) * b, 1.5) if psf is None else min(r_ap, cell_r)
    ex, ey = ev.x, ev.y
    if tree is not None:  # only events the centroid (6 steps of at most r_c) or the aperture can reach
        near = np.asarray(tree.query_ball_point(start, 7 * r_c + r_ap), dtype=np.int64)
        ex, ey = ev.x[near], ev.y[near]
    cx, cy = _centroid(ex, ey, start, r_c)
    for s in accepted:
        if (s["x"] - cx) ** 2 + (s["y"] - cy) ** 2 < (s["aperture_pix"] + h * b) ** 2:
            return None
    ny, nx = maps.background.shape
    jj, ii = int(np.clip((cy - y0) // b, 0, ny - 1)), int(np.clip((cx - x0) // b, 0, nx - 1))
    t_exp = ev.exposure if exposure is None else float(exposure[jj, ii]) * ev.deadtime_factor
    if t_exp <= 0:
        return None
    inside = (ex - cx) ** 2 + (ey - cy) ** 2 <= r_ap * r_ap
    n = int(inside.sum())
    mu = float(maps.background[jj, ii]) / (b * b) * np.pi * r_ap * r_ap
    wings = 0.0
    eef = 1.0
    if psf is not None:
        eef = float(psf.encircled(r_ap))
        wings = sum(max(s["net_counts"], 0.0) * psf.mass_in_circle(cx - s["x"], cy - s["y"], r_ap)
                    for s in accepted)
    expected = mu + wings
    ra, dec = ev.sky(cx, cy)
    spread = float(np.sqrt(np.var(ex[inside]) + np.var(ey[inside]))) if n > 1 else r_ap
    net = (n - expected) / eef
    return {
        "id": 0, "obs_id": ev.obs_id, "x": cx, "y": cy, "ra": float(ra[0]), "dec": float(dec[0]),
        "pos_err_arcsec": spread / np.sqrt(max(n, 1)) * ev.pixel_scale_arcsec(),
        "counts": n, "background": mu, "wings": wings, "eef": eef, "net_counts": net,
        "exposure": t_exp, "rate": net / max(t_exp, 1e-9),
        "rate_err": float(np.sqrt(n + expected)) / eef / max(t_exp, 1e-9),
        "significance": float(poisson_significance(n, expected)),
        "significance_post_trials": float(poisson_significance(n, expected, maps.trials)),
        "aperture_pix": float(r_ap), "cell_pix": (2 * h + 1) * b,
    }

def _iau_name(ra: float, dec: float) -> str:
    """``SWX Jhhmmss.s+ddmmss`` (truncated, IAU style)."""
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = ((h * 60) % 1) * 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm, ds = int(d), int((d % 1) * 60), int(((d * 60) % 1) * 60)
    return f"SWX J{hh:02d}{mm:02d}{int(ss * 10) / 10:04.1f}{sign}{dd:02d}{dm:02d}{ds:02d}"
