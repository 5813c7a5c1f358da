"""The X-ray transient pipeline as a skyweave workflow: L0 telemetry to L3 products and alerts.

    l0 ─ list_cmos ─┬ decode_cmos ─ calibrate ─┐                (one per CMOS found: fan-out)
                    │   (missing/insufficient attitude or orbit: backtrack to fetch_*)
                    └────────────────── merge_events ─ make_image ─ exposure_map ─ detect_sources
                                                   ┌─────────────────────────────────┘  (one per source)
                       light_curve ─ transient_test ─ make_voevent (only if transient; urgent)
                       spectrum

The raw telemetry is a registered product (``skyweave products add FILE --type ep.l0.telemetry
--obs-id OBS``); ``archive`` is where the attitude/orbit providers find the complete aux files,
passed on as a ``skyweave.Folder`` of the observation's aux files (``l2.archive_folder``), so an
edited aux file re-runs that observation's calibration instead of reusing stale results.

``event_list`` starts instead from an event list FITS file of any mission (Chandra, XMM-Newton,
NICER, RXTE, our own L2 lists; see ``xray_ep.archive``):

    ingest_events ─ describe_events ─ make_image ─ exposure_map ─ detect_sources ─ source_list
                    (the plan)        (imaging)    (aspect history) (imaging)      (or the field)
                                               ┌─────────────────────────────────────────┘
                       light_curve ─ transient_test ─ make_voevent   (one per source, as above)
                       spectrum

Stages that cannot apply to the file are *skipped* (their activities say so), and the reason of
each is in the plan (``describe_events``'s result, also ``skipped`` in the run's results).
"""

from __future__ import annotations

from typing import Any

from skyweave import Product, gather, unmapped, workflow
from xray_ep import alert, archive, l1, l2, l3_image, l3_products


@workflow
def observation(l0: str, obs_id: str, archive: str = "", threshold_sigma: float = 5.0) -> Any:
    raw = Product("", id=l0)
    chips = l1.list_cmos(l0=raw)
    level1 = l1.decode_cmos.map(l0=raw, cmos=chips)
    level2 = l2.calibrate.map(events=level1, archive=l2.archive_folder(archive, obs_id))
    events = l2.merge_events(events=level2)
    image = l3_image.make_image(events=events)
    expmap = l2.exposure_map(events=events, image=image)
    sources = l3_image.detect_sources(image=image, events=events, threshold_sigma=threshold_sigma,
                                      expmap=expmap)
    curves = l3_products.light_curve.map(events=unmapped(events), source=sources)
    spectra = l3_products.spectrum.map(events=unmapped(events), source=sources)
    tests = l3_products.transient_test.map(lc=curves)
    alerts = alert.make_voevent.map(source=sources, test=tests, lc=curves, obs_id=obs_id,
                                    when=tests["is_transient"])
    return {"events": events, "image": image, "expmap": expmap, "sources": sources, "light_curves": curves,
            "spectra": spectra, "tests": tests, "alerts": alerts}


@workflow
def event_list(events: str, threshold_sigma: float = 5.0) -> Any:
    """L3 products of one event list FITS file: ``events`` is its path (or a registered product id,
    which is then what the results' ``events`` hold)."""
    registered = events.startswith("prd-")
    ev = Product("", id=events) if registered else archive.ingest_events(path=events)
    plan = archive.describe_events(events=ev)
    image = l3_image.make_image.options(when=plan["imaging"])(events=ev, binsize=plan["binsize"])
    expmap = l2.exposure_map.options(when=plan["exposure_map"])(events=ev, image=image)
    found = l3_image.detect_sources.options(when=plan["imaging"])(
        image=image, events=ev, threshold_sigma=threshold_sigma, expmap=gather(expmap))
    sources = archive.source_list(plan=plan, detected=gather(found))
    curves = l3_products.light_curve.map(events=unmapped(ev), source=sources)
    spectra = l3_products.spectrum.map(events=unmapped(ev), source=sources)
    tests = l3_products.transient_test.map(lc=curves)
    alerts = alert.make_voevent.map(source=sources, test=tests, lc=curves, obs_id=unmapped(plan["obs_id"]),
                                    when=tests["is_transient"])
    return {"events": events if registered else ev, "plan": plan, "skipped": plan["skipped"], "image": image,
            "expmap": expmap, "sources": sources, "light_curves": curves, "spectra": spectra, "tests": tests,
            "alerts": alerts}
