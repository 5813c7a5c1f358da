"""L0 → L1: decode EP-like telemetry into per-CMOS event lists (the "FXT team" module).

``list_cmos`` reads the telemetry and says which CMOS detectors delivered data — known only once the
file is read, so a workflow maps ``decode_cmos`` over its result (the unknown fan-out).
``decode_cmos`` writes one OGIP event list per CMOS: extension ``EVENTS`` with TIME (s, MET, the
frame time), RAWX, RAWY (pixel) and PHA (chan), and a ``GTI`` extension [TSTART, TSTOP]; headers
OBS_ID, CMOS_ID, TSTART/TSTOP (the observation window from the telemetry header), EXPOSURE,
TIMEDEL (frame time), NBADPKT, MJDREF, TELESCOP/INSTRUME.

Bad input:
* a packet whose CRC32 does not match (or that is cut off at the end of a truncated file) is
  skipped and counted: when its length field is trustworthy (a sync word follows where the packet
  ends) the next packet is read from there, otherwise the decoder resynchronises on the next sync
  word (a run of garbage between two good packets counts as one bad packet); the number of
  rejected packets is logged and written as NBADPKT (so nothing is lost silently, and the other
  packets still count);
* a file that is not telemetry (wrong magic, bad header CRC, unknown format version) or whose file
  header is truncated raises ``skyweave.Fatal`` — retrying cannot fix it.

The packet format is documented in ``xray_ep.conventions``.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from skyweave import Fatal, Product, context, task
from xray_ep import conventions as cv

log = logging.getLogger(__name__)


@dataclass
class Telemetry:
    """What a scan of an L0 file found: its header and the good packets."""

    obs_id: str
    tstart: float
    tstop: float
    frame_time: float
    declared_packets: int
    cmos: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    frame_times: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    counts: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    offsets: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """Byte offset of each good packet's payload."""
    bad_packets: int = 0
    truncated: bool = False


def _logger() -> logging.Logger:
    try:
        return context().log
    except Exception:
        return log


def read_header(data: bytes, source: str) -> Telemetry:
    """Parse and check the file header; ``Fatal`` if this is not (complete) EP telemetry."""
    if len(data) < cv.FILE_HEADER_SIZE:
        raise Fatal(f"{source}: {len(data)} bytes is shorter than the {cv.FILE_HEADER_SIZE}-byte telemetry "
                    "file header: the file is truncated or empty",
                    hint="fetch the telemetry file again from the ground station archive")
    if data[:4] != cv.FILE_MAGIC:
        raise Fatal(f"{source} is not EP L0 telemetry (magic {data[:4]!r}, expected {cv.FILE_MAGIC!r})",
                    hint="check that the right file was passed as the L0 product")
    head = data[: cv.FILE_HEADER.size]
    crc = int.from_bytes(data[cv.FILE_HEADER.size: cv.FILE_HEADER_SIZE], "big")
    if zlib.crc32(head) != crc:
        raise Fatal(f"{source}: the telemetry file header fails its CRC check (corrupt header)",
                    hint="fetch the telemetry file again from the ground station archive")
    _magic, version, size, obs, tstart, tstop, frame, npk = cv.FILE_HEADER.unpack(head)
    if version != cv.FORMAT_VERSION or size != cv.FILE_HEADER_SIZE:
        raise Fatal(f"{source}: telemetry format version {version} (header {size} bytes) is not supported; "
                    f"this decoder reads version {cv.FORMAT_VERSION}")
    return Telemetry(obs_id=obs.rstrip(b"\0").decode("ascii"), tstart=tstart, tstop=tstop,
                     frame_time=round(float(frame), 6), declared_packets=npk)


def _framed(data: bytes, pos: int, stop: int) -> bool:
    """A packet at ``pos`` whose payload ends at ``stop`` is well framed (its length field can be
    trusted) if a sync word, or the end of the file, follows its CRC."""
    after = stop + cv.CRC_BYTES
    return (data[pos: pos + 4] == cv.SYNC_BYTES and pos + cv.PACKET_HEADER.size <= len(data)
            and after <= len(data) and (after == len(data) or data[after: after + 4] == cv.SYNC_BYTES))


def scan(path: str | Path) -> Telemetry:
    """Read an L0 file: check every packet's CRC, resynchronising on the sync word after a bad one."""
    data = Path(path).read_bytes()
    tel = read_header(data, str(path))
    hsize, ev_bytes, end = cv.PACKET_HEADER.size, cv.EVENT_BYTES, len(data)
    unpack, crc32, sync = cv.PACKET_HEADER.unpack_from, zlib.crc32, cv.SYNC_BYTES
    cmos: list[int] = []
    times: list[float] = []
    counts: list[int] = []
    offsets: list[int] = []
    bad = 0
    resyncing = False  # after a bad packet, candidates that fail are not counted again
    pos = cv.FILE_HEADER_SIZE
    while pos < end:
        stop = end
        ok = data[pos: pos + 4] == sync and pos + hsize <= end
        if ok:
            _s, c, _flags, _seq, ftime, n = unpack(data, pos)
            stop = pos + hsize + n * ev_bytes
            if stop + cv.CRC_BYTES > end:
                ok = False
                tel.truncated = True
            else:
                crc = int.from_bytes(data[stop: stop + 4], "big")
                ok = c < cv.N_CMOS and crc32(data[pos + 4: stop]) == crc
        elif pos + hsize > end:
            tel.truncated = True  # the file ends inside a packet header
        if not ok:
            if _framed(data, pos, stop):  # payload hit, header intact: one packet lost, next one follows
                bad += 1
                resyncing = False
                pos = stop + cv.CRC_BYTES
                continue
            bad += 0 if resyncing else 1
            resyncing = True
            nxt = data.find(sync, pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        resyncing = False
        cmos.append(c)
        times.append(ftime)
        counts.append(n)
        offsets.append(pos + hsize)
        pos = stop + cv.CRC_BYTES
    tel.cmos = np.asarray(cmos, dtype=np.int64)
    tel.frame_times = np.asarray(times, dtype=np.float64)
    tel.counts = np.asarray(counts, dtype=np.int64)
    tel.offsets = np.asarray(offsets, dtype=np.int64)
    tel.bad_packets = bad
    return tel


def _report(tel: Telemetry, source: str) -> None:
    if tel.bad_packets or tel.truncated:
        _logger().warning("%s: %d telemetry packet(s) rejected (CRC mismatch, garbage or cut off)%s; "
                          "%d good packets kept", source, tel.bad_packets,
                          ", the file is truncated" if tel.truncated else "", tel.cmos.size)


def events_of(data: bytes, tel: Telemetry, index: int) -> dict[str, NDArray[np.generic]]:
    """TIME, RAWX, RAWY, PHA of the good packets of CMOS ``index``, in telemetry order."""
    sel = np.flatnonzero(tel.cmos == index)
    counts = tel.counts[sel]
    payload = b"".join(data[o: o + n * cv.EVENT_BYTES] for o, n in zip(tel.offsets[sel].tolist(),
                                                                          counts.tolist(), strict=True))
    raw = np.frombuffer(payload, dtype=">u2").reshape(-1, 3)
    return {"TIME": np.repeat(tel.frame_times[sel], counts), "RAWX": raw[:, 0].astype(np.int16),
            "RAWY": raw[:, 1].astype(np.int16), "PHA": raw[:, 2].astype(np.int16)}


def _l0_path(l0: Product | str | Path) -> Path:
    return l0.local_path if isinstance(l0, Product) else Path(l0)


@task(version="1.0")
def list_cmos(l0: Product) -> list[str]:
    """The CMOS ids (``cmosNN``) that delivered at least one good packet, sorted.

    Only known by reading the telemetry: this is the width of the per-CMOS fan-out.
    """
    path = _l0_path(l0)
    tel = scan(path)
    _report(tel, path.name)
    found = [cv.cmos_name(int(c)) for c in np.unique(tel.cmos)]
    if not found:
        raise Fatal(f"{path.name}: no valid packet from any CMOS detector", hint="the telemetry is unusable")
    _logger().info("%s (obs %s): %d CMOS detectors: %s", path.name, tel.obs_id, len(found), ", ".join(found))
    return found


@task(version="1.0")
def decode_cmos(l0: Product, cmos: str) -> Product:
    """Decode the packets of one CMOS into an L1 event list FITS file (type ``ep.l1.events``)."""
    path = _l0_path(l0)
    try:
        index = cv.cmos_index(cmos)
    except ValueError as exc:
        raise Fatal(str(exc)) from exc
    data = path.read_bytes()
    tel = scan(path)
    _report(tel, path.name)
    if not np.any(tel.cmos == index):
        raise Fatal(f"{path.name}: no valid packet from {cmos} in the telemetry",
                    hint="list the detectors present with list_cmos")
    ev = events_of(data, tel, index)
    columns = [fits.Column(name=name, format={"TIME": "D"}.get(name, "I"), unit=unit, array=ev[name])
               for name, unit in cv.L1_COLUMNS.items()]
    events = fits.BinTableHDU.from_columns(columns, name=cv.EVENTS_EXT)
    for name, (lo, hi) in {"RAWX": (0, cv.CHIP_SIZE - 1), "RAWY": (0, cv.CHIP_SIZE - 1),
                           "PHA": (0, cv.N_PHA - 1)}.items():
        n = list(cv.L1_COLUMNS).index(name) + 1
        events.header[f"TLMIN{n}"], events.header[f"TLMAX{n}"] = lo, hi
    gti = fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format="D", unit=u, array=np.array([v]))
         for (n, u), v in zip(cv.GTI_COLUMNS.items(), (tel.tstart, tel.tstop), strict=True)], name=cv.GTI_EXT)
    nbad = tel.bad_packets
    for hdu in (events, gti):
        h = hdu.header
        h["HDUCLASS"], h["HDUCLAS1"] = "OGIP", "EVENTS" if hdu is events else "GTI"
        h["TELESCOP"], h["INSTRUME"] = cv.TELESCOP, cv.INSTRUME
        h[cv.KW_OBS_ID], h[cv.KW_CMOS_ID] = tel.obs_id, cmos
        h[cv.KW_TSTART], h[cv.KW_TSTOP] = tel.tstart, tel.tstop
        h["MJDREFI"], h["MJDREFF"] = cv.MJDREFI, cv.MJDREFF
        h["TIMESYS"], h["TIMEUNIT"], h["TIMEREF"] = cv.TIMESYS, cv.TIMEUNIT, "LOCAL"
    h = events.header
    h[cv.KW_EXPOSURE] = (tel.tstop - tel.tstart, "[s] observation window (no GTI filtering at L1)")
    h["TIMEDEL"] = (tel.frame_time, "[s] CMOS frame time")
    h[cv.KW_NBADPKT] = (nbad, "packets rejected: bad CRC/garbage/cut off")
    h["NPACKETS"] = (int(np.sum(tel.cmos == index)), "good packets decoded for this CMOS")
    h["DATALVL"] = "L1"
    h["CREATOR"] = "xray_ep.l1.decode_cmos v1.0"
    out = context().output(f"{tel.obs_id}_{cmos}_l1.fits")
    fits.HDUList([fits.PrimaryHDU(), events, gti]).writeto(out, overwrite=True)
    _logger().info("%s: %d events from %d packets (%d bad packets in the file)", cmos, ev["TIME"].size,
                   int(h["NPACKETS"]), nbad)
    return Product(out, type=cv.L1_EVENTS, obs_id=tel.obs_id, detector=cmos,
                   attributes={"tstart": tel.tstart, "tstop": tel.tstop, "n_events": int(ev["TIME"].size),
                               "nbadpkt": nbad})
