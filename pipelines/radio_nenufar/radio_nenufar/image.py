"""Imaging: convolutional gridding, FFT, Högbom CLEAN, restoring, source finding, FITS output.

Gridding
    Each visibility is spread on a uv grid ``PAD`` (2) times the image size with a Gaussian kernel
    ``exp(-d^2 / (2 KERNEL_SIGMA^2))`` (d in grid cells, ``KERNEL_SIGMA`` = 1) truncated at
    ``KERNEL_HALF`` (3) cells, natural weighting (the file's weights).  Only the half plane that is
    measured is gridded and the image is ``Re(sum ...)``: the same as gridding the Hermitian
    conjugates too.  u is gridded with a minus sign so that image column x grows toward the West
    (East to the left, as FITS ``CDELT1 < 0``).  The image is the inverse FFT, cropped to the central
    ``npix``, divided by the kernel's Fourier transform (the grid correction, analytic for a
    Gaussian) and normalised by the PSF peak: units Jy/beam.  Visibilities outside the grid
    (|u| > 1 / (2 cell)) are dropped and counted (``n_dropped``).  The w term is corrected by
    w-stacking when it matters (below).

w-stacking (``w_planes``; None: automatic)
    A visibility is ``S exp(-2 pi i (u l + v m + w (n - 1)))`` (``conventions``, as ``simulate`` and
    ``calibrate.predict_model`` compute it); the 2-D transform above ignores ``w (n - 1)``, which
    displaces and smears sources away from the phase centre when |w| is large (low elevation, long
    tracks, wide fields).  With ``w_planes`` = N >= 2 the samples with w < 0 are first replaced by
    their Hermitian conjugates (u, v, w, V -> -u, -v, -w, conj V: the real image is the same), then
    split into N equal slices of [0, max w]; each slice is gridded alone (the same kernel), inverse
    FFT'd to a complex image ``sum w V exp(+2 pi i (u l + v m))`` and multiplied by
    ``exp(+2 pi i w_k (n - 1))`` (w_k the slice centre, ``n = sqrt(1 - l^2 - m^2)`` per pixel,
    l = -(x - npix//2) cell as u is gridded with a minus sign); the slices are summed, the real part
    taken, and the grid correction and PSF normalisation applied as without.  The PSF goes through
    the same slices (on its 2 npix image): it is the image of a unit source at the phase centre, and
    CLEAN uses it everywhere.  That is the stated approximation: away from the phase centre, even
    after exact w correction, a source's response is the PSF of the baselines projected toward it,
    (u - w l0 / n0, v - w m0 / n0); at 4.5 deg and 15-23 deg elevation it differs from the
    phase-centre PSF by 15 % of the peak, so CLEAN-component fluxes there are off (up to 80 %) while
    positions and restored peaks are right (``tests/pipelines/radio/test_wstacking.py``).
    Automatic N (``w_plane_count``): 1, no w correction, when the phase error at the field edge
    (half the image width, l = (npix//2) cell), ``max|w| (1 - n_edge)``, is below ``W_TOL_CYCLES``
    (0.05 cycles); else ``ceil(max|w| (1 - n_edge) / (2 W_TOL_CYCLES))`` (at least 2), so that no
    sample is more than 0.05 cycles from its slice's correction at the edge, capped at
    ``MAX_AUTO_W_PLANES`` (256; beyond it the edge error is larger: pass ``w_planes`` explicitly).
    Folding moves a sample to the mirror cell, so ``n_dropped`` at the grid edge can differ by a
    few samples from the plain imager's.  ``w_planes=1`` is the
    plain imager, exactly (the same code path).  Cost: the gridding work is the same (each sample in
    one slice; the slices use ``grid_vis_onepass``, one ``np.bincount`` per chunk instead of one per
    kernel offset), plus per slice one complex inverse FFT of the (2 npix)^2 grid and of the
    (4 npix)^2 PSF grid (scipy's, on every core) and a phase screen.  Measured (2 busy cores): the
    wide-field test, 256 px, 51 slices, 0.5 -> 2.2 s per ``image_data``; the simulated NenuFAR
    observation (512 px, 30-75 MHz near the zenith: max|w| 29-72 wavelengths, edge error
    0.19-0.46 cycles -> 5, 4, 3, 2 slices) costs about the same as without (0.9-1.5 s either way), and
    ``skyweave demo radio`` took 25 s (28 s without w-stacking in the same conditions).

CLEAN (Högbom 1974)
    Repeatedly find the absolute peak of the residual and subtract ``gain`` (0.1) times the PSF
    (computed on an image twice as large, so a shifted PSF covers the whole image) centred there,
    until ``niter`` or the peak is below ``threshold`` (Jy/beam).  The restoring beam is a Gaussian
    fitted to the PSF main lobe (second moments of the region above half maximum: a uniform
    ellipse of semi-axes a, b has variances a^2/4, b^2/4); the restored image is the components
    convolved with it (by FFT) plus the residual.

Image grid (``npix`` / ``cell_arcmin`` None: automatic, see ``image_grid``)
    cell = 1 / (``PIX_PER_BEAM`` (4) * the longest baseline in wavelengths at the highest frequency),
    i.e. ~4 pixels across the synthesized beam (the FWHM of a natural-weighted beam is >= 1 / that
    baseline).  npix = the primary beam FWHM ``1.2 lambda_max / D`` (lowest frequency; D the antenna
    diameter the file states, else ``DISH_M`` by telescope name) over the cell, rounded up to a
    multiple of 16, between ``MIN_AUTO_NPIX`` (32) and ``MAX_AUTO_NPIX`` (512, the stated cap: the
    PSF is computed on a 4 npix grid, 2048^2 at the cap), and the field at most ``MAX_FIELD_RAD``
    (1.6 rad: the SIN projection ends at |l| = 1).  Unknown diameter: ``DEFAULT_NPIX`` (256).
    A PSF whose half-power main lobe is wider than half the image (a uv coverage too sparse or too
    regular to image) is refused (``Fatal``), not imaged, and so is a cell so coarse that the
    main lobe is under one pixel.
    Examples: EVLA 36 GHz 1 km: 0.0069' cells, 208 px (the 1.4' primary beam); ATA 1.26 GHz 320 m:
    0.65', 256 px; VLBA 8 GHz: 0.22 mas cells, capped at 512 px (0.11" of a 6' primary beam);
    simulated NenuFAR 30-75 MHz, 25 m mini-arrays: 0.96-2.4', capped at 512 px.

Sources
    Local maxima of the restored image above ``max(5 rms(residual), 2 % of the peak)``; each
    source's flux is the sum of CLEAN components within one beam FWHM of the maximum and its
    position their flux-weighted centroid (tested: within 0.2 beam of the truth, relative fluxes
    within 10 %).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import fft as scipy_fft
from scipy import ndimage

from radio_nenufar import conventions as cv
from radio_nenufar.calibrate import good_mask, read_gains
from skyweave import Fatal, Product, context, task

PAD = 2
KERNEL_SIGMA = 1.0
KERNEL_HALF = 3
ARCMIN = np.pi / 180 / 60
PIX_PER_BEAM = 4
MIN_AUTO_NPIX = 32
MAX_AUTO_NPIX = 512
DEFAULT_NPIX = 256
MAX_FIELD_RAD = 1.6
W_TOL_CYCLES = 0.05
"""w-stacking: the largest w-term phase error (cycles) left at the field edge (module docstring)."""
MAX_AUTO_W_PLANES = 256
"""w-stacking: the cap on the automatic number of w planes (module docstring)."""
PB_FWHM_FACTOR = 1.2
DISH_M: dict[str, float] = {"NenuFAR-SIM": 25.0, "NENUFAR": 25.0, "EVLA": 25.0, "VLA": 25.0, "VLBA": 25.0,
                            "MWA": 4.4, "PAPER": 2.0, "HERA": 14.0, "ATA": 6.1, "LOFAR": 30.0}
"""Antenna (station, mini-array, tile) diameters by telescope name (upper case except the simulator),
for files that do not state it (NenuFAR: a 19-antenna mini-array is ~25 m across; MWA: a 4 x 4
dipole tile, 4.4 m; PAPER: a dipole over a reflector, ~2 m)."""


def max_uv_lambda(data: dict[str, Any]) -> float:
    """The longest projected baseline (u, v) in wavelengths at the highest frequency, over the rows
    that have at least one good sample (all rows when none has)."""
    rows = good_mask(data).any(axis=1)
    uvw = data["uvw_m"][rows] if rows.any() else data["uvw_m"]
    return float(np.hypot(uvw[:, 0], uvw[:, 1]).max() * float(np.max(data["freq_hz"])) / cv.C_M_S)


def dish_m(data: dict[str, Any]) -> float:
    """The antenna diameter (m): the file's, else ``DISH_M`` by telescope name, else NaN."""
    d = float(data.get("dish_m", float("nan")))
    if np.isfinite(d) and d > 0:
        return d
    name = str(data.get("telescope", ""))
    return DISH_M.get(name, DISH_M.get(name.upper(), float("nan")))


def image_grid(data: dict[str, Any], npix: int | None = None, cell_arcmin: float | None = None
               ) -> tuple[int, float]:
    """(npix, cell_arcmin): the given values, or automatic ones for those that are None (module
    docstring, "Image grid")."""
    if cell_arcmin is None:
        uvmax = max_uv_lambda(data)
        if not uvmax > 0:
            raise Fatal("no baseline with a non-zero projected length: cannot choose an image cell",
                        hint="pass cell_arcmin explicitly")
        cell_arcmin = 1.0 / (PIX_PER_BEAM * uvmax) / ARCMIN
    cell = cell_arcmin * ARCMIN
    if npix is None:
        d = dish_m(data)
        if np.isfinite(d):
            fov = min(PB_FWHM_FACTOR * cv.C_M_S / float(np.min(data["freq_hz"])) / d, MAX_FIELD_RAD)
            npix = int(np.clip(16 * int(np.ceil(fov / cell / 16)), MIN_AUTO_NPIX, MAX_AUTO_NPIX))
        else:
            npix = DEFAULT_NPIX
        if npix * cell > MAX_FIELD_RAD:
            npix = max(16, 2 * int(MAX_FIELD_RAD / cell / 2))
    return int(npix), float(cell_arcmin)


def grid_vis(u_lam: np.ndarray, v_lam: np.ndarray, vis: np.ndarray, weight: np.ndarray, *, ngrid: int,
             cell_rad: float) -> tuple[np.ndarray, int]:
    """Grid weighted visibilities (1-D arrays) on an ``ngrid`` x ``ngrid`` uv grid (vectorised over
    the visibilities, one pass per kernel offset); returns the grid and the number dropped."""
    du = 1.0 / (ngrid * cell_rad)
    gx, gy = -u_lam / du + ngrid // 2, v_lam / du + ngrid // 2
    inside = ((gx >= KERNEL_HALF) & (gx < ngrid - KERNEL_HALF - 1)
              & (gy >= KERNEL_HALF) & (gy < ngrid - KERNEL_HALF - 1))
    gx, gy, wv, w = gx[inside], gy[inside], (weight * vis)[inside], weight[inside]
    ix, iy = np.rint(gx).astype(np.int64), np.rint(gy).astype(np.int64)
    fx, fy = gx - ix, gy - iy
    offs = np.arange(-KERNEL_HALF, KERNEL_HALF + 1)
    kx = np.exp(-((offs[:, None] - fx[None, :]) ** 2) / (2 * KERNEL_SIGMA**2))  # (nk, nvis)
    ky = np.exp(-((offs[:, None] - fy[None, :]) ** 2) / (2 * KERNEL_SIGMA**2))
    re = np.zeros(ngrid * ngrid)
    im = np.zeros(ngrid * ngrid)
    wr, wi = wv.real, wv.imag
    for j, oy in enumerate(offs):
        row = (iy + oy) * ngrid + ix
        for i, ox in enumerate(offs):
            k = kx[i] * ky[j]
            re += np.bincount(row + ox, k * wr, ngrid * ngrid)
            im += np.bincount(row + ox, k * wi, ngrid * ngrid)
    del w
    return (re + 1j * im).reshape(ngrid, ngrid), int((~inside).sum())


def grid_vis_onepass(u_lam: np.ndarray, v_lam: np.ndarray, vis: np.ndarray, weight: np.ndarray, *,
                     ngrid: int, cell_rad: float, chunk: int = 32768) -> tuple[np.ndarray, int]:
    """``grid_vis`` (the same kernel, cells and dropped samples; equal to rounding) with one
    ``np.bincount`` per chunk of visibilities instead of one per kernel offset: the cost no longer
    grows with the grid area times the kernel size, which w-stacking (one grid per w plane) needs."""
    du = 1.0 / (ngrid * cell_rad)
    gx, gy = -u_lam / du + ngrid // 2, v_lam / du + ngrid // 2
    inside = ((gx >= KERNEL_HALF) & (gx < ngrid - KERNEL_HALF - 1)
              & (gy >= KERNEL_HALF) & (gy < ngrid - KERNEL_HALF - 1))
    gx, gy, wv = gx[inside], gy[inside], (weight * vis)[inside]
    offs = np.arange(-KERNEL_HALF, KERNEL_HALF + 1)
    real = not np.iscomplexobj(wv) or not np.any(wv.imag)
    re = np.zeros(ngrid * ngrid)
    im = np.zeros(ngrid * ngrid)
    for lo in range(0, gx.size, chunk):
        cx, cy, cv_ = gx[lo:lo + chunk], gy[lo:lo + chunk], wv[lo:lo + chunk]
        ix, iy = np.rint(cx).astype(np.int64), np.rint(cy).astype(np.int64)
        kx = np.exp(-((offs[:, None] - (cx - ix)[None, :]) ** 2) / (2 * KERNEL_SIGMA**2))
        ky = np.exp(-((offs[:, None] - (cy - iy)[None, :]) ** 2) / (2 * KERNEL_SIGMA**2))
        idx = ((iy[None, None, :] + offs[:, None, None]) * ngrid
               + ix[None, None, :] + offs[None, :, None]).ravel()
        k = (ky[:, None, :] * kx[None, :, :]).reshape(-1, cx.size)
        re += np.bincount(idx, (k * cv_.real[None, :]).ravel(), ngrid * ngrid)
        if not real:
            im += np.bincount(idx, (k * cv_.imag[None, :]).ravel(), ngrid * ngrid)
    return (re + 1j * im).reshape(ngrid, ngrid), int((~inside).sum())


def grid_correction(ngrid: int, npix: int) -> np.ndarray:
    """The kernel's Fourier transform over the central ``npix`` pixels of an ``ngrid`` image (1-D)."""
    x = (np.arange(npix) - npix // 2) / ngrid
    return np.exp(-2 * np.pi**2 * KERNEL_SIGMA**2 * x**2)


def grid_to_complex(grid: np.ndarray, npix: int, *, threads: bool = False) -> np.ndarray:
    """Inverse FFT of a uv grid, central ``npix`` x ``npix`` crop, complex, not grid-corrected:
    ``sum w V exp(+2 pi i (u l + v m))`` of the gridded visibilities (l = -(x - npix//2) cell).
    ``threads``: scipy's FFT on every core (w-stacking) instead of numpy's."""
    ngrid = grid.shape[0]
    shifted = np.fft.ifftshift(grid)
    inv = scipy_fft.ifft2(shifted, workers=-1) if threads else np.fft.ifft2(shifted)
    img = np.fft.fftshift(inv) * ngrid * ngrid
    lo = ngrid // 2 - npix // 2
    return np.asarray(img[lo:lo + npix, lo:lo + npix])


def grid_to_image(grid: np.ndarray, npix: int) -> np.ndarray:
    """Inverse FFT of a uv grid, central ``npix`` x ``npix`` crop, grid-corrected (not normalised)."""
    ngrid = grid.shape[0]
    c = grid_correction(ngrid, npix)
    return np.asarray(grid_to_complex(grid, npix).real / np.outer(c, c))


def n_minus_1(npix: int, cell_rad: float) -> np.ndarray:
    """``n - 1 = sqrt(1 - l^2 - m^2) - 1`` at each pixel of an ``npix`` image (centre npix//2; beyond
    the horizon, l^2 + m^2 > 1, n is taken as 0)."""
    x = (np.arange(npix) - npix // 2) * cell_rad
    r2 = x[None, :] ** 2 + x[:, None] ** 2
    return np.asarray(np.sqrt(np.clip(1.0 - r2, 0.0, None)) - 1.0)


def w_plane_count(w_lam: np.ndarray, *, npix: int, cell_rad: float) -> int:
    """Automatic number of w planes (module docstring, "w-stacking"): 1 (no w correction) when
    ``max|w| (1 - n_edge) < W_TOL_CYCLES``, else enough planes over ``[0, max|w|]`` (w folded to
    >= 0) that each plane's centre is within ``W_TOL_CYCLES`` of every w in it at the field edge."""
    if w_lam.size == 0:
        return 1
    edge = min((npix // 2) * cell_rad, 1.0)
    err = float(np.max(np.abs(w_lam))) * (1.0 - np.sqrt(1.0 - edge**2))
    if not err >= W_TOL_CYCLES:
        return 1
    return int(np.clip(np.ceil(err / (2 * W_TOL_CYCLES)), 2, MAX_AUTO_W_PLANES))


def uv_samples(data: dict[str, Any], gains: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Good samples as flat (u, v) in wavelengths, gain-corrected vis and weights."""
    u, v, _, vis, weight = uvw_samples(data, gains)
    return u, v, vis, weight


def uvw_samples(data: dict[str, Any], gains: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Good samples as flat (u, v, w) in wavelengths, gain-corrected vis and weights."""
    good = good_mask(data)
    vis = data["vis"].astype(np.complex128)
    if gains is not None:
        g1, g2 = gains[data["ant1"]], gains[data["ant2"]]
        with np.errstate(invalid="ignore", divide="ignore"):
            vis = vis / (g1 * np.conj(g2))[:, None]
        good &= np.isfinite(vis)
    rows, chans = np.nonzero(good)
    lam = cv.C_M_S / data["freq_hz"][chans]
    return (data["uvw_m"][rows, 0] / lam, data["uvw_m"][rows, 1] / lam, data["uvw_m"][rows, 2] / lam,
            vis[good], data["weight"][good].astype(float))


def dirty_and_psf(u: np.ndarray, v: np.ndarray, vis: np.ndarray, w: np.ndarray, *, npix: int,
                  cell_rad: float, w_lam: np.ndarray | None = None, w_planes: int = 1
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Dirty image (npix^2, Jy/beam) and PSF (2 npix square, peak 1 at [npix, npix]).
    ``w`` are the weights; ``w_lam`` the w coordinates (wavelengths): with ``w_planes`` >= 2 both
    images are w-stacked (``w_stack``), else (the default) no w correction."""
    if w_lam is not None and w_planes >= 2 and u.size and float(np.max(np.abs(w_lam))) > 0:
        return w_stack(u, v, w_lam, vis, w, npix=npix, cell_rad=cell_rad, w_planes=w_planes)
    grid, dropped = grid_vis(u, v, vis, w, ngrid=PAD * npix, cell_rad=cell_rad)
    pgrid, _ = grid_vis(u, v, np.ones_like(vis), w, ngrid=2 * PAD * npix, cell_rad=cell_rad)
    psf = grid_to_image(pgrid, 2 * npix)
    peak = psf[npix, npix]
    return grid_to_image(grid, npix) / peak, psf / peak, dropped


def w_stack(u: np.ndarray, v: np.ndarray, w_lam: np.ndarray, vis: np.ndarray, weight: np.ndarray, *,
            npix: int, cell_rad: float, w_planes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``dirty_and_psf`` with w-stacking (module docstring): w folded to >= 0 (a sample and its
    Hermitian conjugate give the same real image), ``w_planes`` equal slices of ``[0, max w]``,
    each gridded and inverse-FFT'd alone, multiplied by ``exp(+2 pi i w_k (n - 1))`` (w_k the slice
    centre) and summed; real part, grid correction and PSF normalisation as without w-stacking.
    The PSF (the image of a unit source at the phase centre) goes through the same planes."""
    flip = w_lam < 0
    u, v, wl = np.where(flip, -u, u), np.where(flip, -v, v), np.abs(w_lam)
    vis = np.where(flip, np.conj(vis), vis)
    dw = float(wl.max()) / w_planes
    plane = np.minimum((wl / dw).astype(np.int64), w_planes - 1)
    nm1, nm1_psf = n_minus_1(npix, cell_rad), n_minus_1(2 * npix, cell_rad)
    dirty = np.zeros((npix, npix))
    psf = np.zeros((2 * npix, 2 * npix))
    dropped = 0
    for k in range(w_planes):
        sel = plane == k
        if not sel.any():
            continue
        wk = (k + 0.5) * dw
        grid, nd = grid_vis_onepass(u[sel], v[sel], vis[sel], weight[sel], ngrid=PAD * npix,
                                    cell_rad=cell_rad)
        pgrid, _ = grid_vis_onepass(u[sel], v[sel], np.ones(int(sel.sum())), weight[sel],
                                    ngrid=2 * PAD * npix, cell_rad=cell_rad)
        dropped += nd
        dirty += (grid_to_complex(grid, npix, threads=True) * np.exp(2j * np.pi * wk * nm1)).real
        psf += (grid_to_complex(pgrid, 2 * npix, threads=True) * np.exp(2j * np.pi * wk * nm1_psf)).real
    c, cp = grid_correction(PAD * npix, npix), grid_correction(2 * PAD * npix, 2 * npix)
    dirty /= np.outer(c, c)
    psf /= np.outer(cp, cp)
    peak = psf[npix, npix]
    return dirty / peak, psf / peak, dropped


def hogbom(dirty: np.ndarray, psf: np.ndarray, *, gain: float = 0.1, niter: int = 500,
           threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Högbom CLEAN: (component image, residual)."""
    npix = dirty.shape[0]
    resid = dirty.copy()
    comps = np.zeros_like(dirty)
    for _ in range(niter):
        iy, ix = np.unravel_index(np.argmax(np.abs(resid)), resid.shape)
        peak = resid[iy, ix]
        if abs(peak) < threshold:
            break
        comps[iy, ix] += gain * peak
        resid -= gain * peak * psf[npix - iy:2 * npix - iy, npix - ix:2 * npix - ix]
    return comps, resid


def fit_beam(psf: np.ndarray) -> tuple[float, float, float]:
    """Gaussian restoring beam from the PSF main lobe: (fwhm_major, fwhm_minor) in pixels and the
    position angle (deg, from +y toward -x, i.e. North through East)."""
    c = psf.shape[0] // 2
    lab, _ = ndimage.label(psf > 0.5)
    lobe = lab == lab[c, c]
    y, x = np.nonzero(lobe)
    cov = np.cov(np.vstack([x - c, y - c]).astype(float))
    evals, evecs = np.linalg.eigh(cov)
    fwhm = 4 * np.sqrt(np.maximum(evals, 1e-6))                 # uniform-ellipse variance a^2/4
    major = evecs[:, 1]
    pa = float(np.degrees(np.arctan2(-major[0], major[1])) % 180)
    return float(fwhm[1]), float(fwhm[0]), pa


def gaussian_beam(npix: int, bmaj: float, bmin: float, pa_deg: float) -> np.ndarray:
    """Unit-peak elliptical Gaussian centred at [npix//2, npix//2] (FWHMs in pixels)."""
    y, x = np.mgrid[:npix, :npix] - npix // 2
    t = np.radians(pa_deg)
    a = -x * np.sin(t) + y * np.cos(t)                         # along the major axis
    b = x * np.cos(t) + y * np.sin(t)
    s2 = 8 * np.log(2)
    return np.asarray(np.exp(-0.5 * s2 * ((a / bmaj) ** 2 + (b / bmin) ** 2)))


def restore(comps: np.ndarray, resid: np.ndarray, beam: tuple[float, float, float]) -> np.ndarray:
    """Components convolved with the restoring beam (FFT) plus the residual."""
    kern = gaussian_beam(comps.shape[0], *beam)
    conv = np.fft.irfft2(np.fft.rfft2(comps) * np.fft.rfft2(np.fft.ifftshift(kern)), s=comps.shape)
    return np.asarray(conv + resid)


def celestial_wcs(npix: int, cell_rad: float, ra0: float, dec0: float) -> WCS:
    """The image WCS: RA---SIN/DEC--SIN, East left, phase centre at pixel npix//2 (0-based)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [npix // 2 + 1, npix // 2 + 1]
    w.wcs.cdelt = [-np.degrees(cell_rad), np.degrees(cell_rad)]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    return w


def find_sources(restored: np.ndarray, comps: np.ndarray, resid: np.ndarray, beam: tuple[float, float, float],
                 wcs: WCS, *, nsigma: float = 5.0, min_frac: float = 0.02) -> list[dict[str, Any]]:
    """Sources: local maxima above threshold; flux = CLEAN components within one FWHM."""
    rms = float(np.std(resid))
    thresh = max(nsigma * rms, min_frac * float(restored.max()))
    size = max(3, int(beam[0]) | 1)
    peaks = (restored == ndimage.maximum_filter(restored, size=size)) & (restored > thresh)
    y, x = np.mgrid[: comps.shape[0], : comps.shape[1]]
    out = []
    for py, px in zip(*np.nonzero(peaks), strict=True):
        near = ((x - px) ** 2 + (y - py) ** 2 <= beam[0] ** 2) & (comps > 0)
        flux = float(comps[near].sum())
        if flux <= 0:
            continue
        cx, cy = float((x[near] * comps[near]).sum() / flux), float((y[near] * comps[near]).sum() / flux)
        ra, dec = wcs.wcs_pix2world([[cx, cy]], 0)[0]
        out.append({"ra_deg": float(ra), "dec_deg": float(dec), "x": cx, "y": cy, "flux_jy": flux,
                    "peak_jy_beam": float(restored[py, px]), "snr": float(restored[py, px] / rms)})
    return sorted(out, key=lambda s: -s["flux_jy"])


def image_data(data: dict[str, Any], gains: np.ndarray | None, *, npix: int | None = None,
               cell_arcmin: float | None = None, niter: int = 500, gain: float = 0.1,
               nsigma_stop: float = 3.0, w_planes: int | None = None) -> dict[str, Any]:
    """Image one visibility set: dirty image, PSF, CLEAN, restore, find sources (plain arrays).
    ``npix``/``cell_arcmin`` None: automatic (``image_grid``); ``w_planes`` None: automatic
    (``w_plane_count``; 1 = no w correction); the result says which were used."""
    npix, cell_arcmin = image_grid(data, npix, cell_arcmin)
    cell = cell_arcmin * ARCMIN
    u, v, w_lam, vis, w = uvw_samples(data, gains)
    if vis.size == 0:
        raise Fatal("no good visibilities to image (every sample flagged, zero-weight, non-finite or on "
                    "an antenna without a gain solution)", hint="see the ingest summary and calibrate's log")
    if w_planes is None:
        w_planes = w_plane_count(w_lam, npix=npix, cell_rad=cell)
    elif w_planes < 1:
        raise Fatal(f"w_planes must be >= 1 (or None: automatic), not {w_planes}")
    dirty, psf, dropped = dirty_and_psf(u, v, vis, w, npix=npix, cell_rad=cell, w_lam=w_lam,
                                        w_planes=w_planes)
    noise = float(1 / np.sqrt(w.sum()))                        # expected image noise, Jy/beam
    comps, resid = hogbom(dirty, psf, gain=gain, niter=niter, threshold=nsigma_stop * noise)
    beam = fit_beam(psf)
    if not (np.isfinite(beam[0]) and beam[1] >= 1.0):
        auto = image_grid(data)[1]
        raise Fatal(f"cell {cell_arcmin:.4g}' is too coarse for the synthesized beam (its main lobe is "
                    f"under one pixel)", hint=f"use a smaller cell_arcmin (automatic: {auto:.4g}') or None")
    if beam[0] > npix / 2:
        raise Fatal(f"the PSF's main lobe (its half-power region around the centre) spans {beam[0]:.0f} of "
                    f"{npix} pixels: the uv coverage is too sparse or too regular to image (e.g. a "
                    "redundant array, one baseline per redundant group: sidelobes as high as the main lobe)",
                    hint="image with more baselines, times or channels; or a larger npix/cell_arcmin")
    restored = restore(comps, resid, beam)
    wcs = celestial_wcs(npix, cell, float(data["ra_deg"]), float(data["dec_deg"]))
    return {"dirty": dirty, "psf": psf, "comps": comps, "resid": resid, "restored": restored, "beam": beam,
            "wcs": wcs, "npix": npix, "cell_arcmin": cell_arcmin, "cell_rad": cell, "w_planes": w_planes,
            "n_vis": int(vis.size), "n_dropped": dropped, "noise": noise,
            "sources": find_sources(restored, comps, resid, beam, wcs)}


def write_image_fits(path: Path, img: np.ndarray, wcs: WCS, *, beam_pix: tuple[float, float, float],
                     cell_rad: float, header: dict[str, Any], comps: np.ndarray | None = None) -> Path:
    """Write a restored image with its WCS and beam (and optionally a CLEANCOMP table)."""
    hdr = wcs.to_header()
    scale = np.degrees(cell_rad)
    hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = beam_pix[0] * scale, beam_pix[1] * scale, beam_pix[2]
    hdr["BUNIT"] = "JY/BEAM"
    hdr["TELESCOP"] = header.pop("telescope", cv.TELESCOPE)
    for key, val in header.items():
        hdr[key.upper()[:8]] = val
    hdus: list[Any] = [fits.PrimaryHDU(img.astype(np.float32), header=hdr)]
    if comps is not None:
        yy, xx = np.nonzero(comps)
        ra, dec = wcs.wcs_pix2world(np.c_[xx, yy], 0).T if xx.size else (np.zeros(0), np.zeros(0))
        l, m = cv.direction_cosines(ra, dec, wcs.wcs.crval[0], wcs.wcs.crval[1])  # noqa: E741
        hdus.append(fits.BinTableHDU.from_columns([
            fits.Column("RA", "D", "deg", array=ra), fits.Column("DEC", "D", "deg", array=dec),
            fits.Column("L", "D", array=l), fits.Column("M", "D", array=m),
            fits.Column("FLUX", "D", "Jy", array=comps[yy, xx])], name="CLEANCOMP"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def components_model(comps: np.ndarray, wcs: WCS, freq_hz: float) -> dict[str, Any]:
    """A sky model (conventions format) of CLEAN components, flat spectrum at ``freq_hz``."""
    yy, xx = np.nonzero(comps)
    ra, dec = wcs.wcs_pix2world(np.c_[xx, yy], 0).T if xx.size else (np.zeros(0), np.zeros(0))
    return {"name": "clean-components", "ref_freq_hz": freq_hz, "sources": [
        {"name": f"cc{i}", "ra_deg": float(r), "dec_deg": float(d), "flux_jy": float(f),
         "spectral_index": 0.0}
        for i, (r, d, f) in enumerate(zip(ra, dec, comps[yy, xx], strict=True))]}


@task(version="1.2")
def make_image(vis: Product, gains: Product | None = None, npix: int | None = None,
               cell_arcmin: float | None = None, niter: int = 500, *, w_planes: int | None = None
               ) -> dict[str, Any]:
    """Image one sub-band (gain-corrected when a gain table is given): FITS + sources found.
    ``npix``/``cell_arcmin``/``w_planes`` None: automatic (``image_grid``, ``w_plane_count``)."""
    data = cv.read_vis(vis.local_path)
    g = read_gains(gains.local_path) if gains is not None else None
    res = image_data(data, g, npix=npix, cell_arcmin=cell_arcmin, niter=niter, w_planes=w_planes)
    sub = int(data["subband"][0])
    obs_id = str(data["obs_id"])
    freq = float(np.mean(data["freq_hz"]))
    path = write_image_fits(context().output(f"{obs_id}_sb{sub:03d}_image.fits"), res["restored"], res["wcs"],
                            beam_pix=res["beam"], cell_rad=res["cell_rad"], header={
                                "obs_id": obs_id, "subband": sub, "freq": freq,
                                "telescope": str(data["telescope"]), "noise": res["noise"]},
                            comps=res["comps"])
    return {"subband": sub, "freq_hz": freq, "noise": res["noise"], "n_vis": res["n_vis"],
            "n_dropped": res["n_dropped"], "sources": res["sources"], "npix": res["npix"],
            "cell_arcmin": res["cell_arcmin"], "w_planes": res["w_planes"],
            "image": Product(path, type=cv.IMAGE_SUBBAND, obs_id=obs_id, detector=f"sb{sub:03d}",
                             attributes={"subband": sub, "freq_hz": freq, "noise": res["noise"]})}


def write_model(path: Path, model: dict[str, Any]) -> Path:
    """Write a sky model as JSON."""
    path.write_text(json.dumps(model))
    return path
