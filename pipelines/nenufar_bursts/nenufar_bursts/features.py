"""Cleaning, incoherent dedispersion, candidate search and the features the classifier sees.

Algorithms (shared by the model and the classical baseline, so the comparison is fair)

1. ``clean``: per-channel robust normalisation ``z = (P - median) / (1.4826 MAD)``; a channel is
   flagged (zeroed) when more than ``RFI_FRACTION`` of its samples have ``|z| > 4`` (persistent or
   keyed narrow-band RFI) or its median is more than 6 MADs of the channel medians above the
   median's local trend (a carrier; the trend is a 9-channel running mean of log(median) with the
   band edges extended by odd reflection, so the steep sky spectrum does not make the edge channels
   look like carriers); NaNs and dropped samples (exact zeros) are masked to 0.
   Tolerance: a dispersed burst occupies a channel for < 1 s of 10 s, far below ``RFI_FRACTION``.
   Broadband impulsive RFI is masked per time sample: a sample where more than
   ``IMPULSE_OCCUPANCY`` of the unflagged channels have ``z > 2`` (2.3 % for noise) is zeroed.  A
   burst with DM >= 0.1 sweeps >= 1 s, so at one sample it lights < 20 % of the band.
2. ``dedisperse``: for every trial DM, shift each channel by ``round(delay(DM, f) / DT)`` samples
   and sum, divided by sqrt(number of unflagged channels): unit-variance time series referenced to
   80 MHz (``(n_dm, N_T)``).  Samples whose shifted window leaves the chunk count as zero.
3. ``snr_map``: each trial's series minus its running median over ``DETREND`` samples (3.1 s, much
   longer than any burst: removes the slow humps a solar type III burst leaves at every DM), then
   boxcar matched filters of 1, 2, 4, 8 samples; S/N = sum / sqrt(w) against the robust standard
   deviation of the detrended trial.
4. ``candidates``: greedy peak picking on the (DM, t) S/N map above ``threshold``: take the global
   maximum, suppress +-10 samples (1 s) around it in the DM trials within ``NMS_DM`` (0.15) of it,
   repeat (at most ``LIMIT`` per 10 s).  Suppressing in *every* DM trial (the first version) let a
   bright type III burst hide a dispersed burst arriving within 1 s of it at a quite different DM.
5. ``features``: per candidate, 12 numbers; see ``FEATURE_NAMES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from nenufar_bursts import conventions as cv

WIDTHS = (1, 2, 4, 8)
RFI_FRACTION = 0.15
IMPULSE_OCCUPANCY = 0.5
SUPPRESS = 10
NMS_DM = 0.15
LIMIT = 8
DETREND = 31
N_SUB = 8
FEATURE_NAMES = (
    "snr",
    "dm",
    "log2_width",
    "snr_dm0_ratio",
    "dm_curve_frac",
    "subband_occupancy",
    "subband_cv",
    "dm_subband_fit_rel",
    "curvature_ratio",
    "width_low_high",
    "skew",
    "peak_frac_dm",
    "dominance",
    "other_dm_ratio",
)
"""snr: best boxcar S/N; dm: best DM; dm0 ratio: S/N at DM 0 over best; dm_curve_frac: fraction of
trials with S/N > half the best; subband occupancy: fraction of 8 sub-bands with sub-S/N > 2;
subband_cv: spread of sub-band S/N; dm_subband_fit_rel: DM fitted to the sub-band arrival times
(t = a + K DM f^-2) relative to the best DM; curvature_ratio: chi2 of the nu^-2 law over chi2 of
the type III law; width_low_high: pulse width in the low half of the band over the high half;
skew: time skewness of the dedispersed pulse; peak_frac_dm: best DM over DM_MAX; dominance: S/N
over the highest S/N within +-1 s at any DM (1 for the brightest thing there); other_dm_ratio: the
highest S/N within +-1 s at DMs more than ``NMS_DM`` away, over the candidate's S/N (a bright type III
or another burst next to it)."""


def clean(data: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """``(N_CHAN, N_T)`` normalised, flagged data and a report (see the module docstring)."""
    x = np.asarray(data, dtype=np.float64).T.copy()
    bad = ~np.isfinite(x) | (x == 0.0)
    x[bad] = np.nan
    med = np.nanmedian(x, axis=1, keepdims=True)
    mad = np.nanmedian(np.abs(x - med), axis=1, keepdims=True) * 1.4826
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - med) / mad
    z[~np.isfinite(z)] = 0.0
    frac = np.mean(np.abs(z) > 4, axis=1)
    flagged = frac > RFI_FRACTION
    m = med[:, 0]
    finite = np.isfinite(m) & (m > 0)
    if finite.sum() > 10:
        logm = np.log(np.where(finite, m, 1.0))
        padded = np.pad(logm, 4, mode="reflect", reflect_type="odd")
        trend = np.convolve(padded, np.ones(9) / 9, mode="valid")
        resid = logm - trend
        rmad = np.median(np.abs(resid[finite])) * 1.4826 + 1e-12
        flagged |= finite & (resid > 6 * rmad)
    flagged |= ~finite
    z[flagged] = 0.0
    good = ~flagged
    occupancy = np.mean(z[good] > 2.0, axis=0) if good.any() else np.zeros(z.shape[1])
    impulsive = occupancy > IMPULSE_OCCUPANCY
    z[:, impulsive] = 0.0
    report = {
        "flagged_channels": int(flagged.sum()),
        "masked_samples": int(bad.sum()),
        "impulsive_samples": int(impulsive.sum()),
        "bad_fraction": float(bad.mean()),
    }
    return z, report


_SHIFTS: dict[int, np.ndarray] = {}


def shifts(n_t: int = cv.N_T) -> np.ndarray:
    """Integer sample shifts ``(n_dm, N_CHAN)`` of every channel for every trial DM."""
    if n_t not in _SHIFTS:
        _SHIFTS[n_t] = np.rint(cv.delay_s(cv.dm_grid()[:, None], cv.freqs_mhz()[None, :]) / cv.DT_S).astype(
            np.int64
        )
    return _SHIFTS[n_t]


def dedisperse(z: np.ndarray, good: np.ndarray | None = None) -> np.ndarray:
    """Dedispersed, unit-variance time series ``(n_dm, N_T)`` of normalised data ``(N_CHAN, N_T)``."""
    n_chan, n_t = z.shape
    sh = shifts(n_t)
    pad = np.concatenate([z, np.zeros((n_chan, int(sh.max()) + 1))], axis=1)
    idx = np.arange(n_t)[None, None, :] + sh[:, :, None]
    series = pad[np.arange(n_chan)[None, :, None], idx].sum(axis=1)
    n_good = int(np.count_nonzero(np.any(z != 0, axis=1))) if good is None else int(good.sum())
    return np.asarray(series / np.sqrt(max(n_good, 1)))


def snr_map(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best boxcar S/N ``(n_dm, N_T)`` and the width (samples) that gave it."""
    resid = series - median_filter(series, size=(1, DETREND), mode="reflect")
    med = np.median(resid, axis=1, keepdims=True)
    sd = np.median(np.abs(resid - med), axis=1, keepdims=True) * 1.4826 + 1e-9
    s = (resid - med) / sd
    best = np.full(s.shape, -np.inf)
    width = np.ones(s.shape, dtype=np.int64)
    c = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(s, axis=1)], axis=1)
    for w in WIDTHS:
        box = np.full(s.shape, -np.inf)
        box[:, : s.shape[1] - w + 1] = (c[:, w:] - c[:, :-w]) / np.sqrt(w)
        better = box > best
        best[better] = box[better]
        width[better] = w
    return best, width


def candidates(
    snr: np.ndarray, width: np.ndarray, threshold: float, limit: int | None = None
) -> list[dict[str, Any]]:
    """Greedy peaks of the S/N map: ``[{"i_dm", "i_t", "snr", "width"}]`` (see the docstring)."""
    work = snr.copy()
    dms = cv.dm_grid()
    out: list[dict[str, Any]] = []
    if limit is None:
        limit = max(LIMIT, round(LIMIT * snr.shape[1] / cv.N_T))
    for _ in range(limit):
        i_dm, i_t = np.unravel_index(int(np.argmax(work)), work.shape)
        peak = float(work[i_dm, i_t])
        if not np.isfinite(peak) or peak < threshold:
            break
        out.append({"i_dm": int(i_dm), "i_t": int(i_t), "snr": peak, "width": int(width[i_dm, i_t])})
        near = np.abs(dms - dms[i_dm]) <= NMS_DM + 1e-9
        work[near, max(0, i_t - SUPPRESS) : i_t + SUPPRESS + 1] = -np.inf
    return out


def _subband_times(
    z: np.ndarray, i_t: int, i_dm: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sub-band: centre frequency, arrival time (s, centroid), S/N and width (s) of the pulse."""
    f = cv.freqs_mhz()
    n_chan, n_t = z.shape
    dm = cv.dm_grid()[i_dm]
    per = n_chan // N_SUB
    fc, tc, sn, wd = [], [], [], []
    for b in range(N_SUB):
        sl = slice(b * per, (b + 1) * per)
        good = np.any(z[sl] != 0, axis=1)
        prof = z[sl].sum(axis=0) / np.sqrt(max(int(good.sum()), 1))
        expect = i_t + float(np.mean(cv.delay_s(dm, f[sl]))) / cv.DT_S
        lo, hi = int(max(0, expect - 12 - w)), int(min(n_t, expect + 12 + 2 * w))
        seg = prof[lo:hi] if hi > lo else np.zeros(1)
        k = int(np.argmax(seg)) if seg.size else 0
        win = seg[max(0, k - w - 2) : k + w + 3]
        pos = np.clip(win, 0, None)
        cen = (np.sum(pos * np.arange(win.size)) / pos.sum() + max(0, k - w - 2)) if pos.sum() > 0 else k
        fc.append(float(np.mean(f[sl])))
        tc.append((lo + cen) * cv.DT_S)
        sn.append(
            float(seg[max(0, k - w // 2) : k + w // 2 + 1].sum() / np.sqrt(max(w, 1))) if seg.size else 0.0
        )
        wd.append(float(np.sum(seg > 0.5 * seg.max())) * cv.DT_S if seg.size and seg.max() > 0 else 0.0)
    return np.array(fc), np.array(tc), np.array(sn), np.array(wd)


def features(z: np.ndarray, series: np.ndarray, snr: np.ndarray, cand: dict[str, Any]) -> np.ndarray:
    """The feature vector of one candidate (order: ``FEATURE_NAMES``)."""
    i_dm, i_t, w = cand["i_dm"], cand["i_t"], cand["width"]
    best = cand["snr"]
    col = snr[:, max(0, i_t - 3) : i_t + 4].max(axis=1)
    wide = snr[:, max(0, i_t - SUPPRESS) : i_t + SUPPRESS + 1].max(axis=1)
    far = np.abs(cv.dm_grid() - cv.dm_grid()[i_dm]) > NMS_DM + 1e-9
    dominance = best / max(float(wide.max()), 1e-9)
    other = float(wide[far].max()) / best if far.any() else 0.0
    dm0 = float(col[0])
    dm_curve = float(np.mean(col > 0.5 * best))
    fc, tc, sn, wd = _subband_times(z, i_t, i_dm, w)
    occ = float(np.mean(sn > 2.0))
    cvar = float(np.std(sn) / (abs(np.mean(sn)) + 1e-6))
    use = sn > 2.0
    dm_fit_rel, curv = 0.0, 1.0
    if use.sum() >= 3:
        x2 = cv.K_DM * (fc[use] ** -2 - cv.F_REF_MHZ**-2)
        a2 = np.vstack([np.ones(use.sum()), x2]).T
        coef2, res2, *_ = np.linalg.lstsq(a2, tc[use], rcond=None)
        x3 = fc[use] ** -0.84
        a3 = np.vstack([np.ones(use.sum()), x3]).T
        _, res3, *_ = np.linalg.lstsq(a3, tc[use], rcond=None)
        r2 = float(res2[0]) if res2.size else 0.0
        r3 = float(res3[0]) if res3.size else 0.0
        dm_best = float(cv.dm_grid()[i_dm])
        dm_fit_rel = float((coef2[1] - dm_best) / (dm_best + 0.05))
        curv = float(np.log10((r2 + 1e-4) / (r3 + 1e-4)))
    half = N_SUB // 2
    wl, wh = wd[:half][sn[:half] > 2], wd[half:][sn[half:] > 2]
    wlh = float(np.log2((np.mean(wl) if wl.size else cv.DT_S) / (np.mean(wh) if wh.size else cv.DT_S)))
    prof = series[i_dm, max(0, i_t - 10) : i_t + w + 25]
    pos = np.clip(prof, 0, None)
    if pos.sum() > 0:
        tt = np.arange(pos.size)
        mu = np.sum(tt * pos) / pos.sum()
        var = np.sum((tt - mu) ** 2 * pos) / pos.sum() + 1e-9
        skew = float(np.sum((tt - mu) ** 3 * pos) / pos.sum() / var**1.5)
    else:
        skew = 0.0
    return np.array(
        [
            best,
            float(cv.dm_grid()[i_dm]),
            np.log2(w),
            dm0 / best,
            dm_curve,
            occ,
            cvar,
            dm_fit_rel,
            curv,
            wlh,
            skew,
            float(cv.dm_grid()[i_dm]) / cv.DM_MAX,
            dominance,
            other,
        ]
    )


def analyse(data: np.ndarray, threshold: float = 5.5, previous: np.ndarray | None = None) -> dict[str, Any]:
    """Clean, dedisperse and find candidates of one chunk; features per candidate.

    ``previous``: the preceding chunk's data when the two are contiguous.  The search then runs on the
    window previous + chunk, and keeps only the candidates this chunk *owns* (``owns``): those reaching
    ``OWNER_MHZ`` (40 MHz) inside this chunk.  A burst that started in the previous chunk is seen from
    its start here; one reaching 40 MHz after this chunk is left to the next; so each burst is reported
    once, by the chunk that sees at least its 80-40 MHz part.
    Returns ``{"report", "candidates": [{"time_s", "dm", "width_s", "snr", "time_in_window_s", ...}],
    "X": (n, n_features), "n_previous"}``; ``time_s`` is seconds at 80 MHz from the chunk start
    (negative for a burst that started in the previous chunk).
    """
    n_prev = 0 if previous is None else int(previous.shape[0])
    window = data if previous is None else np.concatenate([previous, data], axis=0)
    z, report = clean(window)
    series = dedisperse(z)
    snr, width = snr_map(series)
    dms = cv.dm_grid()
    start = n_prev * cv.DT_S
    kept, rows = [], []
    for c in candidates(snr, width, threshold):
        t_window = (c["i_t"] + c["width"] / 2) * cv.DT_S
        c["dm"] = float(dms[c["i_dm"]])
        if not owns(t_window - start, c["dm"], data.shape[0] * cv.DT_S):
            continue
        rows.append(features(z, series, snr, c))
        c["time_s"] = round(t_window - start, 3)
        c["time_in_window_s"] = round(t_window, 3)
        c["width_s"] = c["width"] * cv.DT_S
        kept.append(c)
    x = np.array(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))
    return {"report": report, "candidates": kept, "X": x, "n_previous": n_prev}


def owns(time_s: float, dm: float, length_s: float = cv.CHUNK_S) -> bool:
    """Whether a chunk owns a burst at ``time_s`` (80 MHz, from the chunk start) and ``dm``: the burst
    reaches ``OWNER_MHZ`` within ``[-OWNER_GUARD_S, length_s - OWNER_GUARD_S)`` of the chunk
    (``conventions``, "Chunks")."""
    t_own = time_s + float(cv.delay_s(dm, cv.OWNER_MHZ))
    return -cv.OWNER_GUARD_S <= t_own < length_s - cv.OWNER_GUARD_S


def contiguous(previous_meta: dict[str, Any] | None, meta: dict[str, Any]) -> bool:
    """Whether ``meta``'s chunk directly follows ``previous_meta``'s (no gap in between)."""
    if previous_meta is None:
        return False
    return abs(float(previous_meta["t0"]) + cv.CHUNK_S - float(meta["t0"])) < 1e-6


def with_previous(
    chunks: Iterable[tuple[np.ndarray, dict[str, Any]]],
) -> Iterator[tuple[np.ndarray, dict[str, Any], np.ndarray | None]]:
    """``(data, meta, previous data or None)`` along a stream (None after a gap or a bad-shape chunk)."""
    prev: tuple[np.ndarray, dict[str, Any]] | None = None
    for data, meta in chunks:
        usable = (prev is not None and prev[0].shape == data.shape == (cv.N_T, cv.N_CHAN)
                  and contiguous(prev[1], meta))
        yield data, meta, (prev[0] if usable and prev is not None else None)
        prev = (data, meta)


def match(
    found: list[dict[str, Any]], truth: list[dict[str, Any]], t_offset: float = 0.0
) -> tuple[int, int, int, list[bool]]:
    """One-to-one match of detections to injected bursts: ``(tp, fp, fn, is_tp per detection)``.

    A detection (``time_s`` from the chunk start + ``t_offset``, ``dm``) matches a burst when
    ``|dt| <= 0.6 s`` and ``|dDM| <= 0.05 + 0.2 DM``.
    """
    bursts = [b for b in truth if b.get("kind") == "burst"]
    used: set[int] = set()
    flags = [False] * len(found)
    for i in sorted(range(len(found)), key=lambda i: -found[i]["snr"]):
        d = found[i]
        hit = None
        for j, b in enumerate(bursts):
            if j in used:
                continue
            if (
                abs(d["time_s"] + t_offset - b["time_s"]) <= 0.6
                and abs(d["dm"] - b["dm"]) <= 0.05 + 0.2 * b["dm"]
            ):
                hit = j
                break
        flags[i] = hit is not None
        if hit is not None:
            used.add(hit)
    tp = sum(flags)
    return tp, len(flags) - tp, len(bursts) - len(used), flags
