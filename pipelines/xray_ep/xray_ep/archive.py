"""Event lists from the archives into the L3 stages (the "archive desk" module).

``ingest_events`` takes the user's file (never changed: it is copied into product storage);
``describe_events`` reads its headers (``xray_ep.evtfile``) and decides which L3 stages apply, and
says why the others do not (``skipped``, kept in the activity's result, so in provenance):

* **imaging** (``make_image``, ``detect_sources``) needs sky pixel columns ``X``/``Y`` with a
  celestial ``TCTYPn``/``TCRVLn`` WCS (Chandra ACIS, XMM-Newton EPIC, Swift XRT, NuSTAR, our own
  L2 lists).  NICER's XTI and the RXTE PCA/HEXTE do not image: their light curve and spectrum are
  those of the whole field of view (``field_source``), at the pointing (``RA_OBJ``/``RA_PNT``/
  ``RA_NOM``) with the field's radius as position error;
* the **exposure map** (``l2.exposure_map``) needs the aspect history in the file (``ASPHIST``,
  written by ``l2.calibrate``); archive event files carry theirs in separate aspect files, so it
  is skipped and detection uses a flat exposure;
* ``source_list`` joins the branches: the detected sources of an imaging list, the field of a
  non-imaging one.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from skyweave import Fatal, Product, context, task
from xray_ep import conventions as cv
from xray_ep.evtfile import EventData, read_event_file, summary

NON_IMAGING: dict[tuple[str, str], tuple[str, float]] = {
    ("NICER", "XTI"): ("NICER's XTI is a non-imaging array of 56 X-ray concentrators "
                       "(~30 arcmin^2 field of view)", 3.1),
    ("XTE", "PCA"): ("the RXTE PCA is a collimated, non-imaging proportional counter array "
                     "(1 deg FWHM)", 30.0),
    ("XTE", "HEXTE"): ("RXTE HEXTE is a collimated, non-imaging scintillator array (1 deg FWHM)", 30.0),
}
"""Known non-imaging instruments: (TELESCOP, INSTRUME) -> (why no image, field radius in arcmin)."""
DEFAULT_FIELD_RADIUS_ARCMIN = 60.0
"""The position error given to the field of an unknown non-imaging instrument."""
MAX_IMAGE_SIDE = 4096
"""``describe_events`` chooses the image binning so that the events fit in this many pixels a side."""


def _binsize(ev: EventData) -> int:
    """Sky pixels per image pixel so that the events' X/Y extent fits in ``MAX_IMAGE_SIDE``."""
    x, y = ev.columns["X"], ev.columns["Y"]
    if not x.size:
        return 1
    extent = max(float(np.ptp(x)), float(np.ptp(y)), 1.0)
    return max(1, math.ceil(extent / (MAX_IMAGE_SIDE - 40)))  # make_image adds 8-pixel margins


def plan_for(ev: EventData) -> dict[str, Any]:
    """What can be made of an event list, and why not the rest (JSON-able; see the module doc)."""
    facts = summary(ev)
    key = (ev.telescope.upper(), ev.instrument.upper())
    skipped: dict[str, str] = {}
    notes: list[str] = []
    imaging = ev.sky_columns() is not None and ev.time.size > 0
    if not imaging:
        why = NON_IMAGING.get(key, (None, 0.0))[0]
        if why is None:
            why = ("the event list has no events" if ev.time.size == 0 else
                   f"{ev.telescope or 'this'} {ev.instrument} list has no sky pixel columns X/Y with a "
                   "celestial TCTYPn/TCRVLn WCS")
        skipped["make_image"] = f"no image: {why}"
        skipped["detect_sources"] = "no source detection without an image: the light curve and spectrum " \
                                    "are those of the whole field of view"
    if not ev.has_aspect:
        skipped["exposure_map"] = ("no exposure map: the file has no aspect history (ASPHIST extension); "
                                   "archive event files keep the aspect in a separate file"
                                   + ("" if imaging else ", and there is no image"))
    elif not imaging:
        skipped["exposure_map"] = "no exposure map without an image"
    if ev.gti_source.startswith("none"):
        notes.append("no GTI extension: the good time is TSTART-TSTOP")
    if facts["mjdref"] is None:
        notes.append("no MJDREF (or MJDREFI/MJDREFF): the times have no epoch, alert times are not dates")
    if not facts["energy_columns"]:
        notes.append("no ENERGY, PI or PHA column: no spectrum can be made")
    radius = NON_IMAGING.get(key, (None, DEFAULT_FIELD_RADIUS_ARCMIN))[1]
    return {**facts, "imaging": imaging, "exposure_map": imaging and ev.has_aspect,
            "binsize": _binsize(ev) if imaging else 1, "field_radius_arcmin": None if imaging else radius,
            "skipped": skipped, "notes": notes}


@task(version="1.0", cache=False)
def ingest_events(path: str) -> Product:
    """Register an event list FITS file (any mission, ``.gz`` too) as a product, after checking it
    is one (``xray_ep.evtfile``: a clear ``Fatal`` for an image, a light curve, a truncated file).

    The file is copied, never moved or changed.  Not cached: the file is read again on every run,
    so an edited file is noticed (its content hash then differs, and the stages after it run again).
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise Fatal(f"no event file {str(source)!r}", hint="give the path of an event list FITS file")
    ev = read_event_file(source)
    out = context().output(source.name)
    shutil.copyfile(source, out)
    context().log.info("%s: %s %s, %d events, %d GTIs (%s)", source.name, ev.telescope, ev.instrument,
                       ev.time.size, len(ev.gti), ev.gti_source)
    return Product(out, type=cv.ARCHIVE_EVENTS, obs_id=ev.obs_id or source.name.split(".")[0],
                   attributes={"telescope": ev.telescope, "instrument": ev.instrument,
                               "original": str(source.resolve())})


@task(version="1.0")
def describe_events(events: Product) -> dict[str, Any]:
    """The plan of an event list (``plan_for``): mission, times, GTIs, columns, and which L3 stages
    apply (``imaging``, ``exposure_map``), with the reason of each stage left out (``skipped``)."""
    plan = plan_for(read_event_file(events.local_path))
    log = context().log
    log.info("%s %s (%s): imaging %s, exposure map %s", plan["telescope"], plan["instrument"],
             plan["obs_id"], plan["imaging"], plan["exposure_map"])
    for stage, reason in plan["skipped"].items():
        log.info("skipped %s: %s", stage, reason)
    for note in plan["notes"]:
        log.info("note: %s", note)
    return plan


def field_source(plan: dict[str, Any]) -> dict[str, Any]:
    """The whole field of view of a non-imaging instrument as one source (``region = 'field'``)."""
    source: dict[str, Any] = {
        "id": 1, "region": "field", "obs_id": plan["obs_id"], "counts": plan["n_events"],
        "name": plan["object"] or f"{plan['telescope']} {plan['instrument']} field".strip(),
        "pos_err_arcsec": 60.0 * float(plan["field_radius_arcmin"] or DEFAULT_FIELD_RADIUS_ARCMIN),
    }
    if plan.get("pointing"):
        source.update(ra=plan["pointing"]["ra"], dec=plan["pointing"]["dec"])
    return source


@task(version="1.0")
def source_list(plan: dict[str, Any], detected: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The sources to make light curves and spectra of: those detected in the image (``detected``
    is ``[sources]``, or ``[]`` when detection was skipped), or the field of a non-imaging list."""
    if plan["imaging"]:
        return detected[0] if detected else []
    return [field_source(plan)]
