"""The urgent follow-up of a detection: cut-out, dedispersion at the best DM, a PNG plot, a VOEvent.

Trigger: the listener ``on_detection`` (``product.created`` of ``nenufar.bursts.detections`` with
``n_detections > 0``) submits ``followup`` as its *own run* at priority ``URGENT`` (10), so its three
activities overtake the queued priority-1 chunk runs (the controller's ready queue and the bus are
priority queues).  A separate run rather than a ``when=`` branch inside the chunk workflow because:
the detection pipeline stays the same whoever reacts to it (another team can subscribe to the same
product type), the follow-up has its own run id, state and provenance, and a follow-up failure does
not fail the chunk's run.  Its inputs are the detections product and the chunk, so the alert's
lineage goes back to the raw chunk and to the model artifact.

Algorithms
* ``cutout``: the detection's window (+-2 s around the sweep) of the cleaned chunk (preceded by the
  previous chunk when the detector used it: a burst may start there); the DM is refined
  on a grid of 0.0025 pc cm^-3 around the best trial (+-0.03) by maximising the peak of the
  dedispersed series at the candidate's boxcar width; the cut-out is dedispersed at that DM.
* ``plot_burst``: a PNG (greyscale, 8-bit) of the dynamic spectrum as observed, the dedispersed one
  and the pulse profile, written by a small numpy + zlib PNG encoder (no matplotlib needed).
* ``make_voevent``: VOEvent 2.0 (``voevent-parse``), ``role=observation``, with the time at 80 MHz,
  DM, width, S/N, model probability and version in ``What``, validated against the schema.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import voeventparse as vp
from lxml import etree

from nenufar_bursts import conventions as cv
from nenufar_bursts.features import clean
from nenufar_bursts.simulate import read_chunk
from skyweave import Fatal, Product, context, task, workflow
from skyweave.listeners import ListenerContext, listener

URGENT = 10
STREAM = "skyweave.local/nenufar-bursts"
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
"""UTC of stream time 0 for the simulated streams."""


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write a 2-D array as an 8-bit greyscale PNG (rows top to bottom), min..max scaled."""
    a = np.asarray(image, dtype=float)
    lo, hi = np.nanpercentile(a, 1), np.nanpercentile(a, 99.5)
    g = np.clip((np.nan_to_num(a, nan=lo) - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in g)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    head = struct.pack(">IIBBBBB", g.shape[1], g.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    return path


def dedisperse_at(z: np.ndarray, dm: float) -> np.ndarray:
    """Cleaned data ``(N_CHAN, N_T)`` shifted to remove the delay at ``dm`` (zeros shifted in)."""
    sh = np.rint(cv.delay_s(dm, cv.freqs_mhz()) / cv.DT_S).astype(int)
    out = np.zeros_like(z)
    n_t = z.shape[1]
    for c, s in enumerate(sh):
        if s < n_t:
            out[c, : n_t - s] = z[c, s:]
    return out


def refine_dm(z: np.ndarray, dm0: float, i_t: int, width: int) -> tuple[float, float]:
    """Best DM within +-0.03 of ``dm0`` (step 0.0025) and the boxcar S/N there."""
    best = (dm0, -np.inf)
    n_good = max(int(np.count_nonzero(np.any(z != 0, axis=1))), 1)
    for dm in np.arange(max(0.0, dm0 - 0.03), dm0 + 0.03 + 1e-9, 0.0025):
        s = dedisperse_at(z, float(dm)).sum(axis=0) / np.sqrt(n_good)
        sd = np.median(np.abs(s - np.median(s))) * 1.4826 + 1e-9
        seg = np.convolve(s - np.median(s), np.ones(width), "same")[max(0, i_t - 3) : i_t + width + 3]
        val = float(seg.max() / np.sqrt(width) / sd) if seg.size else -np.inf
        if val > best[1]:
            best = (float(round(dm, 4)), val)
    return best


@task(version="1.2", priority=URGENT)
def cutout(detections: Product, chunk: Product, previous: Product | None = None) -> Product:
    """Cut out and dedisperse the best detection of a chunk (see the module docstring); with the previous
    chunk when the detector searched previous + chunk (a burst that started before this chunk)."""
    det = json.loads(detections.local_path.read_text())
    if not det["detections"]:
        raise Fatal(f"detections {detections.id} contain no detection to follow up")
    best = max(det["detections"], key=lambda d: d["snr"])
    data, freqs, meta = read_chunk(chunk.local_path)
    n_prev = 0
    if previous is not None and det.get("previous") == previous.id:
        prev, _, _ = read_chunk(previous.local_path)
        data, n_prev = np.concatenate([prev, data], axis=0), prev.shape[0]
    z, _ = clean(data)
    width = max(1, round(best["width_s"] / cv.DT_S))
    i_t = round(best["time_in_chunk_s"] / cv.DT_S + n_prev - width / 2)
    dm, snr = refine_dm(z, float(best["dm"]), i_t, width)
    sweep = int(np.ceil(float(cv.delay_s(dm, cv.F_LO_MHZ)) / cv.DT_S))
    lo, hi = max(0, i_t - 20), min(z.shape[1], i_t + sweep + 20)
    ded = dedisperse_at(z, dm)
    path = context().output(f"{meta['obs_id']}_{meta['index']:05d}_cutout.npz")
    with path.open("wb") as fh:
        np.savez(
            fh,
            observed=z[:, lo:hi].T.astype(np.float32),
            dedispersed=ded[:, lo:hi].T.astype(np.float32),
            freqs_mhz=freqs,
            meta=np.array(
                json.dumps(
                    {**best, "dm_refined": dm, "snr_refined": snr, "start_sample": lo - n_prev,
                     "chunk_t0": meta["t0"]}
                )
            ),
        )
    return Product(
        path,
        type=cv.CUTOUT,
        obs_id=meta["obs_id"],
        detector=cv.detector_id(meta),
        attributes={
            "dm": dm,
            "snr": round(snr, 2),
            "time_s": best["time_s"],
            "index": meta["index"],
            "probability": best.get("probability"),
            "model_version": det["model_version"],
            "arrival": detections.attributes.get("arrival"),
        },
    )


@task(version="1.1", priority=URGENT)
def plot_burst(cut: Product) -> Product:
    """PNG: observed (top), dedispersed (middle) spectra, frequency up; profile (bottom)."""
    with np.load(cut.local_path, allow_pickle=False) as zf:
        obs, ded = np.array(zf["observed"]).T[::-1], np.array(zf["dedispersed"]).T[::-1]
    prof = ded.sum(axis=0)
    rows = 48
    scaled = (prof - prof.min()) / max(float(np.ptp(prof)), 1e-12)
    panel = np.zeros((rows, prof.size))
    for i, v in enumerate(scaled):
        panel[rows - 1 - int(v * (rows - 1)) :, i] = 1.0
    spacer = np.full((4, prof.size), np.nan)
    img = np.vstack(
        [
            obs / max(float(np.nanstd(obs)), 1e-9),
            spacer,
            ded / max(float(np.nanstd(ded)), 1e-9),
            spacer,
            panel * 4.0,
        ]
    )
    img = np.repeat(np.repeat(img, 2, axis=0), 4, axis=1)
    path = write_png(context().output(cut.local_path.stem.replace("_cutout", "_burst") + ".png"), img)
    return Product(path, type=cv.PLOT, obs_id=cut.obs_id, detector=cut.detector,
                   attributes=dict(cut.attributes))


@task(version="1.1", priority=URGENT)
def make_voevent(cut: Product, plot: Product) -> Product:
    """The VOEvent 2.0 alert of the burst, schema-validated (invalid is ``Fatal``)."""
    a = cut.attributes
    when = EPOCH + dt.timedelta(seconds=float(a["time_s"]))
    digest = hashlib.sha1(f"{cut.obs_id}:{a['index']}:{a['time_s']}:{a['dm']}".encode()).hexdigest()[:10]
    local = f"{cut.obs_id}-{a['index']:05d}-{digest}"
    v = vp.Voevent(stream=STREAM, stream_id=local, role=vp.definitions.roles.observation)
    vp.set_who(
        v, date=dt.datetime.now(dt.UTC).replace(microsecond=0), author_ivorn="skyweave.local/nenufar-bursts"
    )
    vp.set_author(v, title="skyweave NenuFAR-like burst pipeline", shortName="skyweave-bursts")
    vp.add_where_when(
        v,
        coords=vp.Position2D(
            ra=83.633, dec=22.0145, err=1.0, units="deg", system=vp.definitions.sky_coord_system.utc_fk5_geo
        ),
        obs_time=when,
        observatory_location=vp.definitions.observatory_location.geosurface,
    )
    params = [
        vp.Param("dm", value=float(a["dm"]), unit="pc/cm3", ucd="phys.dispMeasure"),
        vp.Param("snr", value=float(a["snr"]), unit="sigma", ucd="stat.snr"),
        vp.Param("time_ref_freq", value=cv.F_REF_MHZ, unit="MHz", ucd="em.freq"),
        vp.Param("probability", value=float(a.get("probability") or 0.0), ucd="stat.probability"),
        vp.Param("model_version", value=str(a["model_version"]), ucd="meta.version"),
        vp.Param("obs_id", value=str(cut.obs_id), ucd="meta.id;obs"),
        vp.Param("plot", value=str(plot.uri or plot.local_path), ucd="meta.ref.url"),
    ]
    v.What.append(vp.Group(params, name="burst"))
    # voevent-parse 1.0.3's add_why/add_how use collections.Iterable (removed in Python 3.10): build
    # Why and How by hand, as those helpers would (same work-around as xray_ep.alert).
    why = etree.SubElement(v, "Why")
    why.attrib["importance"] = str(round(min(1.0, float(a.get("probability") or 0.0)), 3))
    v.Why.append(vp.Inference(relation="identified", concept="process.variation.burst;em.radio"))
    etree.SubElement(v, "How")
    etree.SubElement(v.How, "Description")
    v.How.Description[-1] = (
        f"Incoherent dedispersion + random-forest classifier {a['model_version']} on "
        "NenuFAR-like beamformed dynamic spectra (skyweave nenufar_bursts)."
    )
    if not vp.valid_as_v2_0(v):
        try:
            vp.assert_valid_as_v2_0(v)
        except Exception as exc:
            raise Fatal(f"the VOEvent for {local} is not valid VOEvent 2.0: {exc}") from exc
        raise Fatal(f"the VOEvent for {local} is not valid VOEvent 2.0")
    path = context().output(f"{local}.xml")
    with path.open("wb") as fh:
        vp.dump(v, fh)
    return Product(
        path,
        type=cv.VOEVENT,
        obs_id=cut.obs_id,
        detector=cut.detector,
        attributes={
            "ivorn": v.attrib["ivorn"],
            **{k: a.get(k) for k in ("dm", "snr", "time_s", "index", "model_version", "arrival")},
        },
    )


@workflow
def followup(detections: str, chunk: str, previous: str = "") -> Any:
    """Cut-out -> plot -> VOEvent for the best detection of one chunk (all at priority URGENT)."""
    extra = {"previous": Product("", id=previous)} if previous else {}
    cut = cutout(detections=Product("", id=detections), chunk=Product("", id=chunk), **extra)
    png = plot_burst(cut=cut)
    return {"cutout": cut, "plot": png, "voevent": make_voevent(cut=cut, plot=png)}


@listener("product.created")
def on_detection(topic: str, event: Any, ctx: ListenerContext) -> None:  # noqa: ARG001
    """Start ``followup`` at priority URGENT for every detections product with a detection."""
    product = event.product
    if product.type != cv.DETECTIONS or not product.attributes.get("n_detections"):
        return
    if ctx.submit is None:
        ctx.log.warning("burst in %s but this host cannot start runs", product.id)
        return
    run_id = ctx.submit(
        "nenufar_bursts.followup:followup",
        {"detections": product.id, "chunk": product.attributes["chunk"],
         "previous": product.attributes.get("previous") or ""},
        URGENT,
    )
    ctx.log.info("burst in chunk %s: follow-up run %s", product.attributes.get("index"), run_id)
