"""Conventions shared by every stage of the radio pipeline (the "interface control document").

Only names, units, layouts and the file format live here; every stage module is written against
this page and nothing else.

Product types
    ``radio.vis.raw`` (all sub-bands of an observation), ``radio.vis.subband`` (one sub-band),
    ``radio.cal.skymodel`` (calibrator model, JSON), ``radio.cal.gains`` (gain solutions, .npz),
    ``radio.image.subband`` (FITS), ``radio.image.merged`` (FITS), ``radio.image.png``.

Visibility file (``.npz``, written with ``numpy.savez``; see ``write_vis`` / ``read_vis``)
    ``vis``     complex64 (nrow, nchan): Stokes I visibilities, Jy (I = (XX+YY)/2 or (RR+LL)/2), or,
                in a file with one row set per feed (real data ingested per feed, see ``ingest``),
                parallel-hand correlations whose "antennas" are feeds: for an unpolarised sky each
                estimates I, and the mean over all rows (what the imager forms) is Stokes I;
    ``flag``    bool (nrow, nchan): True = bad sample;
    ``weight``  float32 (nrow, nchan): 1/sigma^2 (1/Jy^2), 0 for flagged samples;
    ``uvw_m``   float64 (nrow, 3): baseline coordinates in metres, u toward East, v toward North
                (of the phase centre), w toward the phase centre; ``uvw = x[ant2] - x[ant1]``;
    ``ant1``, ``ant2`` int32 (nrow,): antenna (mini-array) indices, ant1 < ant2, no autocorrelations;
    ``time_s``  float64 (nrow,): seconds since ``t0_mjd``;
    ``freq_hz`` float64 (nchan,): channel centre frequencies;
    ``subband`` int32 (nchan,): the sub-band number of each channel;
    ``ra_deg``, ``dec_deg`` (scalars): phase centre (ICRS); ``t0_mjd``; ``n_ant``;
    ``obs_id``, ``telescope`` (strings); ``ant_names`` (n_ant,) strings (``"ea01/R"`` for a feed);
    optional ``dish_m`` (scalar): the antennas' diameter in metres (NaN or absent: not stated).

Measurement equation and signs
    ``V_pq(u, v, w) = g_p conj(g_q) sum_k S_k exp(-2 pi i (u l_k + v m_k + w (n_k - 1)))`` with
    (u, v, w) in wavelengths, l toward East (increasing RA), m toward North,
    ``n = sqrt(1 - l^2 - m^2)``; ``l = cos(dec) sin(ra - ra0)``,
    ``m = sin(dec) cos(dec0) - cos(dec) sin(dec0) cos(ra - ra0)``.  Images are
    ``I(l, m) = sum w V exp(+2 pi i (u l + v m)) / sum w``.  Gains are only defined up to one overall
    phase: solutions are referenced so that antenna ``REF_ANT`` has zero phase.

Images (FITS, primary HDU)
    2-D, ``NAXIS1`` = x (RA, East to the left: ``CDELT1 < 0``), ``NAXIS2`` = y (Dec), projection
    ``RA---SIN``/``DEC--SIN``, ``CRPIX = npix/2 + 1`` at the phase centre, ``BUNIT = 'JY/BEAM'``,
    restoring beam ``BMAJ``/``BMIN``/``BPA`` (deg), ``FREQ`` (Hz), ``OBS_ID``, ``SUBBAND``.
    Sub-band images carry an extension ``CLEANCOMP`` (columns RA, DEC (deg), L, M, FLUX (Jy)).

Sky models (JSON)
    ``{"name": str, "ref_freq_hz": float, "sources": [{"name", "ra_deg", "dec_deg", "flux_jy",
    "spectral_index"}]}``; the flux at frequency f is ``flux_jy * (f / ref_freq_hz) ** spectral_index``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Final

import numpy as np

from skyweave import Fatal

# -- product types ---------------------------------------------------------------------------------
VIS_RAW: Final = "radio.vis.raw"
VIS_SUBBAND: Final = "radio.vis.subband"
SKYMODEL: Final = "radio.cal.skymodel"
GAINS: Final = "radio.cal.gains"
IMAGE_SUBBAND: Final = "radio.image.subband"
IMAGE_MERGED: Final = "radio.image.merged"
IMAGE_PNG: Final = "radio.image.png"

TELESCOPE: Final = "NenuFAR-SIM"
REF_ANT: Final = 0
C_M_S: Final = 299_792_458.0
BAND_HZ: Final = (20e6, 80e6)
"""The NenuFAR band used by the simulator."""

VIS_ARRAYS: Final = ("vis", "flag", "weight", "uvw_m", "ant1", "ant2", "time_s", "freq_hz", "subband",
                     "ant_names")
VIS_SCALARS: Final = ("ra_deg", "dec_deg", "t0_mjd", "n_ant", "obs_id", "telescope")
VIS_OPTIONAL: Final = {"dish_m": float("nan")}
"""Optional scalars: written when given, read back as the default when absent."""


def write_vis(path: Path, data: dict[str, Any]) -> Path:
    """Write a visibility file (the layout above); missing weights default to 1, flags to False."""
    vis = np.asarray(data["vis"], dtype=np.complex64)
    out = {
        "vis": vis,
        "flag": np.asarray(data.get("flag", np.zeros(vis.shape, bool)), dtype=bool),
        "weight": np.asarray(data.get("weight", np.ones(vis.shape)), dtype=np.float32),
        "uvw_m": np.asarray(data["uvw_m"], dtype=np.float64),
        "ant1": np.asarray(data["ant1"], dtype=np.int32),
        "ant2": np.asarray(data["ant2"], dtype=np.int32),
        "time_s": np.asarray(data["time_s"], dtype=np.float64),
        "freq_hz": np.asarray(data["freq_hz"], dtype=np.float64),
        "subband": np.asarray(data["subband"], dtype=np.int32),
        "ant_names": np.asarray(data["ant_names"], dtype=str),
    }
    for key in VIS_SCALARS:
        out[key] = np.asarray(data[key])
    for key, default in VIS_OPTIONAL.items():
        out[key] = np.asarray(data.get(key, default))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(fh, **out)  # type: ignore[arg-type]
    return path


def _not_vis(path: Path | str, why: str) -> Fatal:
    return Fatal(f"{path} is not a visibility file of this pipeline ({why})",
                 hint="give the .npz written by the simulator, partition.extract_subband or "
                      "ingest.import_visibilities (real uvfits/uvh5 files: import them with "
                      "ingest.import_visibilities first)")


def read_subbands(path: Path | str) -> np.ndarray:
    """Only the ``subband`` array of a visibility file (cheap); a clear error if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return np.asarray(npz["subband"])
    except KeyError as exc:
        raise _not_vis(path, f"no {exc} array") from exc
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _not_vis(path, "not a NumPy .npz archive") from exc


def read_vis(path: Path | str) -> dict[str, Any]:
    """Read a visibility file into a dict of arrays; scalars come back as Python values.  A file
    that is not one (not an .npz, or missing arrays) raises ``Fatal`` saying so."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            data: dict[str, Any] = {key: npz[key] for key in VIS_ARRAYS}
            for key in VIS_SCALARS:
                data[key] = npz[key].item()
            for key, default in VIS_OPTIONAL.items():
                data[key] = npz[key].item() if key in npz.files else default
    except KeyError as exc:
        raise _not_vis(path, f"no {exc} array") from exc
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _not_vis(path, "not a NumPy .npz archive") from exc
    return data


def direction_cosines(ra_deg: Any, dec_deg: Any, ra0_deg: float, dec0_deg: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(l, m) of sky positions relative to the phase centre (the SIN projection, radians)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    ra0, dec0 = np.radians(ra0_deg), np.radians(dec0_deg)
    l = np.cos(dec) * np.sin(ra - ra0)  # noqa: E741 - l is the standard name
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(ra - ra0)
    return np.asarray(l, float), np.asarray(m, float)


def sky_position(l: Any, m: Any, ra0_deg: float, dec0_deg: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: E741
    """Inverse of ``direction_cosines``: (ra, dec) in degrees."""
    l, m = np.asarray(l, float), np.asarray(m, float)  # noqa: E741
    n = np.sqrt(np.clip(1.0 - l * l - m * m, 0.0, None))
    dec0 = np.radians(dec0_deg)
    dec = np.arcsin(m * np.cos(dec0) + n * np.sin(dec0))
    ra = np.radians(ra0_deg) + np.arctan2(l, n * np.cos(dec0) - m * np.sin(dec0))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def model_flux(source: dict[str, Any], freq_hz: Any, ref_freq_hz: float) -> np.ndarray:
    """A model source's flux density (Jy) at ``freq_hz`` (power law)."""
    return np.asarray(source["flux_jy"] * (np.asarray(freq_hz) / ref_freq_hz)
                      ** source.get("spectral_index", 0.0), float)
