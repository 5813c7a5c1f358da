"""Event lists from the archives (the "any mission" reader): Chandra, XMM-Newton, NICER, RXTE,
Swift, NuSTAR and this pipeline's own L2 lists, read by their OGIP/HEASARC headers alone.

What is read, and from where:

* the **event table**: the extension named ``EVENTS``, else the first binary table with
  ``HDUCLAS1 = 'EVENTS'`` (or ``'EVENT'``), else the first binary table with a ``TIME`` column that
  is not a GTI (RXTE calls it ``XTE_SE``); column names are matched case-insensitively;
* **times**: ``TIME`` plus ``TIMEZERO`` (plus ``(0.5 - TIMEPIXR) * TIMEDEL`` when ``TIMEPIXR`` is
  given, as stingray does), in seconds since ``MJDREF`` (or ``MJDREFI + MJDREFF``) in ``TIMESYS``
  (TT when absent, the OGIP default), at ``TIMEREF`` (``LOCAL`` or ``SOLARSYSTEM``: barycentred);
  ``TSTART``/``TSTOP`` with the same ``TIMEZERO``;
* **good time**: the intersection of every GTI extension (``GTI``, ``STDGTI``, ``STDGTInn``,
  ``HDUCLAS1 = 'GTI'``; columns ``START``/``STOP`` in any case), each shifted by its own
  ``TIMEZERO`` (OGIP: an HDU's TIMEZERO applies to every time in it).  Per-CCD extensions
  (``STDGTInn``, or a ``CCD_ID`` keyword) of CCDs that recorded no event are left out, as stingray
  does.  A file without any GTI extension gets ``[TSTART, TSTOP]`` and says so (``gti_source``);
* **sky pixels**: columns ``X``/``Y`` whose ``TCTYPn`` is a celestial projection (``RA---TAN``...);
  RAWX/RAWY with ``TCTYP = 'RAWX'`` (NICER) are not sky coordinates;
* **energies**: ``ENERGY`` (``TUNIT`` eV or keV), ``PI`` and ``PHA`` channels, whichever exist;
* **aspect history**: an ``ASPHIST`` extension (this pipeline's L2 lists) makes an exposure map
  possible; archive files carry their aspect in separate files, so they have none here.

Refused with a ``Fatal`` that says what the file is instead: unreadable or truncated FITS, an image
(counts in the primary HDU, no event table), a light curve (``HDUCLAS1 = 'LIGHTCURVE'``) or a
spectrum, a table without a ``TIME`` column, a TIMEUNIT other than seconds, and GTIs that leave
no good time.  gzip-compressed files (``.evt.gz``) are read as they are.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from skyweave import Fatal

SKY_PREFIXES = ("RA--", "DEC-", "GLON", "GLAT", "ELON", "ELAT")
READ_COLUMNS = ("X", "Y", "PI", "PHA", "ENERGY")
DETECTOR_COLUMNS = ("CCD_ID", "CCDNR")
GTI_NAME = re.compile(r"^(STD)?GTI(\d*)$", re.IGNORECASE)


@dataclass(frozen=True)
class EventData:
    """An event list as read from its headers (arrays float64, times in seconds since MJDREF)."""

    path: Path
    extname: str
    time: np.ndarray
    columns: dict[str, np.ndarray]
    """``X``, ``Y``, ``PI``, ``PHA``, ``ENERGY`` (upper case), those present."""
    column_numbers: dict[str, int]
    """1-based column number of every column of the event table, by upper-case name."""
    column_limits: dict[str, tuple[float, float]]
    """``TLMINn``/``TLMAXn`` per upper-case column name, when given."""
    units: dict[str, str]
    header: fits.Header
    """The event table's header merged over the primary header (the table wins); ``TIMESYS`` and
    ``TSTART``/``TSTOP`` (with ``TIMEZERO`` applied) always present; ``TIMEZERO`` set to 0."""
    gti: np.ndarray
    """``(n, 2)`` good-time intervals, clipped to ``[TSTART, TSTOP]``."""
    gti_source: str
    """Where the GTIs came from (extension names, or why there are none)."""
    has_aspect: bool

    @property
    def obs_id(self) -> str:
        return str(self.header.get("OBS_ID", "")).strip()

    @property
    def telescope(self) -> str:
        return str(self.header.get("TELESCOP", "")).strip()

    @property
    def instrument(self) -> str:
        return str(self.header.get("INSTRUME", "")).strip()

    @property
    def deadtime_factor(self) -> float:
        """Live fraction: ``DEADC`` (XMM/Swift) or ``DTCOR`` (Chandra), else 1."""
        return float(self.header.get("DEADC", self.header.get("DTCOR", 1.0)))

    @property
    def exposure(self) -> float:
        """Live exposure (s): total good time times the dead-time factor."""
        return float(np.sum(self.gti[:, 1] - self.gti[:, 0])) * self.deadtime_factor

    def sky_columns(self) -> tuple[int, int] | None:
        """Column numbers of ``X`` and ``Y`` if they are sky pixels (celestial ``TCTYPn``)."""
        nx, ny = self.column_numbers.get("X"), self.column_numbers.get("Y")
        if nx is None or ny is None:
            return None
        types = [str(self.header.get(f"TCTYP{n}", "")).strip().upper() for n in (nx, ny)]
        return (nx, ny) if all(t.startswith(SKY_PREFIXES) for t in types) else None

    def pointing(self) -> tuple[float, float, str] | None:
        """(RA, Dec, keyword pair) of the target: ``RA_OBJ``, else ``RA_PNT``, else ``RA_NOM``."""
        for ra, dec in (("RA_OBJ", "DEC_OBJ"), ("RA_PNT", "DEC_PNT"), ("RA_NOM", "DEC_NOM")):
            if ra in self.header and dec in self.header:
                try:
                    return float(self.header[ra]), float(self.header[dec]), ra
                except (TypeError, ValueError):
                    continue
        return None


def _binned(hdu: fits.BinTableHDU) -> str | None:
    """``"light curve"`` or ``"spectrum"`` if the table is one (by HDUCLAS1, name or columns)."""
    cls = str(hdu.header.get("HDUCLAS1", "")).strip().upper()
    cols = {c.upper() for c in hdu.columns.names}
    if cls == "LIGHTCURVE" or hdu.name.upper() == "RATE" or any(c.startswith("RATE") for c in cols):
        return "light curve"
    if cls == "SPECTRUM" or hdu.name.upper() == "SPECTRUM" or "CHANNEL" in cols:
        return "spectrum"
    return None


def _what_it_is(hdul: fits.HDUList) -> str:
    """A description of a FITS file that holds no event table, for the error message."""
    for hdu in hdul[1:]:
        kind = _binned(hdu) if isinstance(hdu, fits.BinTableHDU) else None
        if kind:
            return f"a {kind} (extension {hdu.name})"
    primary = hdul[0]
    if primary.header.get("NAXIS", 0) >= 2 and primary.data is not None:
        shape = "x".join(str(primary.header[f"NAXIS{i}"]) for i in range(1, primary.header["NAXIS"] + 1))
        return f"an image ({shape} pixels in the primary HDU)"
    return f"a FITS file with extensions {[h.name for h in hdul]}"


def _event_hdu(hdul: fits.HDUList, name: str) -> fits.BinTableHDU:
    tables = [h for h in hdul[1:] if isinstance(h, fits.BinTableHDU)]
    for hdu in tables:
        if hdu.name.upper() == "EVENTS":
            return hdu
    for hdu in tables:
        if str(hdu.header.get("HDUCLAS1", "")).strip().upper() in ("EVENTS", "EVENT"):
            return hdu
    for hdu in tables:
        cols = {c.upper() for c in hdu.columns.names}
        if "TIME" in cols and not GTI_NAME.match(hdu.name) and not {"START", "STOP"} <= cols \
                and _binned(hdu) is None:
            return hdu
    raise Fatal(f"{name} is {_what_it_is(hdul)}, not an event list",
                hint="give an event file: a binary table of photons with a TIME column "
                     "(extension EVENTS, HDUCLAS1 = 'EVENTS'), e.g. a Chandra evt2 or NICER cl.evt file")


def _gtis(hdul: fits.HDUList, detectors: set[int] | None, name: str) -> tuple[list[np.ndarray], list[str]]:
    found: list[np.ndarray] = []
    names: list[str] = []
    for hdu in hdul[1:]:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        match = GTI_NAME.match(hdu.name)
        if not (match or str(hdu.header.get("HDUCLAS1", "")).strip().upper() == "GTI"):
            continue
        cols = {c.upper(): c for c in hdu.columns.names}
        if "START" not in cols or "STOP" not in cols:
            raise Fatal(f"{name}: GTI extension {hdu.name} has no START/STOP columns",
                        hint=f"its columns: {', '.join(hdu.columns.names)}")
        ccd = hdu.header.get("CCD_ID", int(match.group(2)) if match and match.group(2) else None)
        if detectors is not None and ccd is not None and int(ccd) not in detectors:
            continue  # the GTI of a CCD that saw no event (stingray leaves these out too)
        zero = float(hdu.header.get("TIMEZERO", 0.0))
        found.append(np.column_stack([np.asarray(hdu.data[cols["START"]], float) + zero,
                                      np.asarray(hdu.data[cols["STOP"]], float) + zero]))
        names.append(hdu.name)
    return found, names


def in_gti(time: np.ndarray, gti: np.ndarray) -> np.ndarray:
    """Which times fall in a good-time interval ``[START, STOP)`` (``gti`` sorted, not overlapping)."""
    i = np.searchsorted(gti[:, 0], time, side="right") - 1
    return np.asarray((i >= 0) & (time < gti[np.maximum(i, 0), 1]))


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The intersection of two sets of intervals (each ``(n, 2)``, any order)."""
    a, b = a[np.argsort(a[:, 0])], b[np.argsort(b[:, 0])]
    lo = np.maximum(a[:, None, 0], b[None, :, 0])
    hi = np.minimum(a[:, None, 1], b[None, :, 1])
    keep = hi > lo
    out = np.column_stack([lo[keep], hi[keep]])
    return out[np.argsort(out[:, 0])] if out.size else out.reshape(0, 2)


def read_event_file(path: Path | str, need: tuple[str, ...] = ()) -> EventData:
    """Read an archive or pipeline event list (see the module docstring); ``Fatal`` if it is not
    one, or lacks one of the columns ``need`` (upper case; checked first, named in the error)."""
    path = Path(path)
    try:
        hdul = fits.open(path, memmap=False)
    except (OSError, ValueError, EOFError) as exc:
        raise Fatal(f"{path.name} is not a readable FITS file: {exc}",
                    hint="check that the file is complete (a truncated download?) and is FITS") from exc
    with hdul, warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*truncated", category=AstropyUserWarning)
        try:
            hdul.verify("silentfix")
            events = _event_hdu(hdul, path.name)
            return _read(hdul, events, path, need)
        except (OSError, ValueError, EOFError, TypeError, AstropyUserWarning) as exc:  # truncated, bad cards
            raise Fatal(f"{path.name}: cannot read the event list: {exc}",
                        hint="check that the file is complete (a truncated download?)") from exc


def _read(hdul: fits.HDUList, events: fits.BinTableHDU, path: Path, need: tuple[str, ...]) -> EventData:
    header = hdul[0].header.copy()
    header.update({k: v for k, v in events.header.items() if k not in ("COMMENT", "HISTORY", "")})
    names = [n.upper() for n in events.columns.names]
    for name in ("TIME", *need):
        if name not in names:
            raise Fatal(f"{path.name}: the {events.name} table has no column {name!r}",
                        hint=f"columns present: {', '.join(names)}", column=name)
    unit = str(header.get("TIMEUNIT", "s")).strip().lower() or "s"
    if unit not in ("s", "sec", "second", "seconds"):
        raise Fatal(f"{path.name}: TIMEUNIT = {unit!r}; only seconds are supported",
                    hint="convert the TIME column to seconds since MJDREF", keyword="TIMEUNIT")
    if "MJDREF" not in header and "MJDREFI" in header:  # OGIP allows the split form too
        header["MJDREF"] = float(header["MJDREFI"]) + float(header.get("MJDREFF", 0.0))
    header.setdefault("TIMESYS", "TT")
    data = events.data

    def col(name: str) -> np.ndarray:
        return np.asarray(data[events.columns.names[names.index(name)]], dtype=float)

    zero = float(header.get("TIMEZERO", 0.0))
    stamp = zero
    if "TIMEPIXR" in header:  # stamps at the frame start/end: move them to the centre (as stingray)
        stamp += (0.5 - float(header["TIMEPIXR"])) * float(header.get("TIMEDEL", 0.0))
    time = col("TIME") + stamp
    order = np.argsort(time, kind="stable")
    sort = not np.all(order == np.arange(time.size))
    time = time[order] if sort else time
    columns = {n: (col(n)[order] if sort else col(n)) for n in READ_COLUMNS if n in names}
    detectors = next((set(col(n).astype(int).tolist()) for n in DETECTOR_COLUMNS if n in names), None)
    tstart = float(header["TSTART"]) + zero if "TSTART" in header else float(time.min(initial=0.0))
    tstop = float(header["TSTOP"]) + zero if "TSTOP" in header else float(time.max(initial=0.0))
    header["TSTART"], header["TSTOP"], header["TIMEZERO"] = tstart, tstop, 0.0
    found, gti_names = _gtis(hdul, detectors, path.name)
    if found:
        gti = found[0]
        for other in found[1:]:
            gti = intersect(gti, other)
        source = " ∩ ".join(gti_names)
    else:
        gti = np.array([[tstart, tstop]])
        source = "none in the file: TSTART-TSTOP used"
    gti = np.clip(gti, tstart, tstop)
    gti = gti[gti[:, 1] > gti[:, 0]]
    if not gti.size:
        raise Fatal(f"{path.name}: the good-time intervals ({source}) leave no good time in "
                    f"[TSTART, TSTOP] = [{tstart}, {tstop}]", hint="check the GTI extensions")
    limits: dict[str, tuple[float, float]] = {}
    units: dict[str, str] = {}
    for i, name in enumerate(names, start=1):
        lo, hi = events.header.get(f"TLMIN{i}"), events.header.get(f"TLMAX{i}")
        if lo is not None and hi is not None:
            limits[name] = (float(lo), float(hi))
        units[name] = str(events.header.get(f"TUNIT{i}", "")).strip()
    return EventData(path=path, extname=events.name, time=time, columns=columns,
                     column_numbers={n: i for i, n in enumerate(names, start=1)}, column_limits=limits,
                     units=units, header=header, gti=gti, gti_source=source,
                     has_aspect="ASPHIST" in hdul)


def summary(ev: EventData) -> dict[str, Any]:
    """The JSON-able facts of an event list that decide what can be made of it."""
    pointing = ev.pointing()
    return {
        "telescope": ev.telescope, "instrument": ev.instrument, "obs_id": ev.obs_id,
        "object": str(ev.header.get("OBJECT", "")).strip(), "extension": ev.extname,
        "n_events": int(ev.time.size), "tstart": float(ev.header["TSTART"]),
        "tstop": float(ev.header["TSTOP"]), "timesys": str(ev.header["TIMESYS"]).strip(),
        "timeref": str(ev.header.get("TIMEREF", "LOCAL")).strip(),
        "mjdref": float(ev.header["MJDREF"]) if "MJDREF" in ev.header else None,
        "gti": {"source": ev.gti_source, "intervals": len(ev.gti),
                "good_time": float(np.sum(ev.gti[:, 1] - ev.gti[:, 0]))},
        "exposure": ev.exposure, "deadtime_factor": ev.deadtime_factor,
        "sky_columns": ev.sky_columns() is not None,
        "energy_columns": [c for c in ("ENERGY", "PI", "PHA") if c in ev.columns],
        "aspect_history": ev.has_aspect,
        "pointing": None if pointing is None else {"ra": pointing[0], "dec": pointing[1],
                                                   "keyword": pointing[2]},
    }
