"""Transient alerts as VOEvent 2.0 packets, built and schema-validated with ``voevent-parse``."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import voeventparse as vp
from lxml import etree

from skyweave import Fatal, Product, SkyweaveError, context, task
from skyweave.provenance.ids import activity_id as ivo_activity

STREAM = "skyweave.local/ep-xray"
"""IVOA authority/resource of the alert stream: packet IVORNs are ``ivo://<STREAM>#<local id>``."""
SYSTEMATIC_ERROR_ARCSEC = 10.0
"""Added in quadrature to the statistical position error (attitude reconstruction)."""
OBSERVATORY_LOCATION = vp.definitions.observatory_location.geolunar
"""Where the observatory is, as VOEvent 2.0 (section 3.3.1) takes it from the IVOA STC library of
observatory locations: ``GEOLUN`` for a satellite in Earth orbit (as Swift's BAT and XRT packets
say), ``GEOSURFACE`` only for a telescope on the ground.  X-rays do not reach the ground, so every
instrument this pipeline reads (EP, Chandra, XMM-Newton, NICER on the ISS, RXTE) is ``GEOLUN``."""


def _provenance(explicit: str) -> str:
    """The IVOA id of the activity making the alert (or ``explicit`` when given)."""
    if explicit:
        return explicit
    try:
        ctx = context()
    except SkyweaveError:
        return ""
    if ctx.activity_id.startswith("ivo://"):
        return ctx.activity_id
    return ivo_activity(ctx.activity_id, str(ctx.extra.get("authority", "skyweave.local")))


def _when_and_frame(test: dict[str, Any]) -> tuple[dt.datetime, str]:
    """The peak time and the STC coordinate system it is given in: barycentred light curves
    (``TIMEREF = 'SOLARSYSTEM'``) in TDB at the barycentre, others in UTC at the geocentre."""
    bary = str(test.get("timeref", "LOCAL")).upper() == "SOLARSYSTEM" and test.get("peak_time_tdb")
    stamp = str(test["peak_time_tdb"] if bary else test["peak_time_utc"])
    system = (vp.definitions.sky_coord_system.tdb_icrs_bary if bary
              else vp.definitions.sky_coord_system.utc_icrs_geo)
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC), system


@task(version="1.2", priority=10)
def make_voevent(source: dict[str, Any], test: dict[str, Any], obs_id: str, *, provenance: str = "",
                 systematic_arcsec: float = SYSTEMATIC_ERROR_ARCSEC, lc: Product | None = None,
                 observatory_location: str = OBSERVATORY_LOCATION) -> Product:
    """Write the VOEvent 2.0 alert of a transient (urgent: priority 10 overtakes normal work).

    ``role = 'observation'``; ``Who`` (author IVORN and date); ``WhereWhen``: ICRS position of
    the source with an error circle (statistical error and ``systematic_arcsec`` in quadrature)
    at the peak time (UTC); ``What``: significance, peak and mean rate, observation id, source
    name/counts; ``Why``: an inference that it is an X-ray transient; ``How``: a ``Reference`` to
    the provenance of the alert (the making activity's IVOA identifier, or ``provenance``).
    ``lc`` is the light curve the transient was found in: an input of the alert, so the alert's
    lineage runs through it back to the telemetry and the aux files (its name goes in ``What``).
    ``ObservatoryLocation`` is ``observatory_location`` (``GEOLUN``: in Earth orbit, see
    ``OBSERVATORY_LOCATION``); the time is UTC at the geocentre (``UTC-ICRS-GEO``), or TDB at the
    solar-system barycentre (``TDB-ICRS-BARY``) when the light curve is barycentred.  ``What``
    names the telescope and instrument of the light curve (from the test result).
    The packet is validated against the VOEvent 2.0 schema before writing; invalid is ``Fatal``.
    """
    if not test.get("peak_time_utc"):
        raise Fatal("transient test result has no peak_time_utc", hint="pass a dict from transient_test")
    for key in ("ra", "dec"):
        if key not in source:
            raise Fatal(f"source dict has no {key!r}", hint="pass a source from detect_sources")
    prov = _provenance(provenance)
    digest = hashlib.sha1(f"{obs_id}:{source.get('id')}:{test['peak_time']}".encode()).hexdigest()[:10]
    local = f"{obs_id}-src{source.get('id', 0)}-{digest}"
    v = vp.Voevent(stream=STREAM, stream_id=local, role=vp.definitions.roles.observation)
    vp.set_who(v, date=dt.datetime.now(dt.UTC).replace(microsecond=0),
               author_ivorn="skyweave.local/ep-xray-pipeline")
    vp.set_author(v, title="skyweave EP-like X-ray transient pipeline", shortName="skyweave-xray-ep")
    err = float((float(source.get("pos_err_arcsec", 0.0)) ** 2 + systematic_arcsec**2) ** 0.5)
    peak, system = _when_and_frame(test)
    vp.add_where_when(v, coords=vp.Position2D(ra=float(source["ra"]), dec=float(source["dec"]),
                                              err=err / 3600.0, units="deg", system=system),
                      obs_time=peak, observatory_location=observatory_location)
    params = [
        vp.Param("significance", value=round(float(test["significance"]), 3), unit="sigma",
                 ucd="stat.snr"),
        vp.Param("peak_rate", value=float(test["peak_rate"]), unit="ct/s", ucd="phot.count;arith.rate"),
        vp.Param("mean_rate", value=float(test["mean_rate"]), unit="ct/s", ucd="phot.count;arith.rate"),
        vp.Param("peak_time_met", value=float(test["peak_time"]), unit="s", ucd="time.epoch"),
        vp.Param("obs_id", value=str(obs_id), ucd="meta.id;obs"),
        vp.Param("source_name", value=str(source.get("name", "")), ucd="meta.id"),
        vp.Param("detection_significance", value=round(float(source.get("significance", 0.0)), 3),
                 unit="sigma", ucd="stat.snr"),
    ]
    for key in ("telescope", "instrument"):
        if test.get(key):
            params.append(vp.Param(key, value=str(test[key]), ucd="instr.obsty" if key == "telescope"
                                   else "meta.id;instr"))
    if lc is not None:
        params.append(vp.Param("light_curve", value=lc.local_path.name, ucd="meta.file"))
    v.What.append(vp.Group(params, name="transient"))
    # voevent-parse 1.0.3's add_why/add_how use collections.Iterable (gone since Python 3.10), so
    # the Why and How sections are assembled here exactly as those helpers would.
    why = etree.SubElement(v, "Why")
    why.attrib["importance"] = str(round(min(1.0, float(test["significance"]) / 10.0), 3))
    v.Why.append(vp.Inference(relation="identified", concept="process.variation.burst;em.X-ray"))
    if prov:
        etree.SubElement(v, "How")
        etree.SubElement(v.How, "Description")
        v.How.Description[-1] = ("Sliding-cell detection and multi-window binomial flare test on an L2 "
                                 "event list; the reference is the provenance of this alert.")
        v.How.append(vp.Reference(uri=prov, meaning="provenance"))
    if not vp.valid_as_v2_0(v):
        try:
            vp.assert_valid_as_v2_0(v)
        except Exception as exc:
            raise Fatal(f"the VOEvent for {local} is not valid VOEvent 2.0: {exc}") from exc
        raise Fatal(f"the VOEvent for {local} is not valid VOEvent 2.0")
    path = context().output(f"{local}.xml")
    with path.open("wb") as f:
        vp.dump(v, f)
    return Product(path, type="ep.alert.voevent", obs_id=obs_id,
                   attributes={"ivorn": v.attrib["ivorn"], "source_id": source.get("id"),
                               "significance": float(test["significance"]), "provenance": prov})
