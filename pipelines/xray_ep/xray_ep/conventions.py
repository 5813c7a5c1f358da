"""Conventions shared by every stage of the EP-like X-ray pipeline (the "interface control document").

Nothing here computes anything: these are the names, units and layouts every team agrees on.

Product types
    ``ep.l0.telemetry`` (raw packets), ``ep.aux.attitude``, ``ep.aux.orbit``, ``ep.l1.events``
    (per CMOS), ``ep.l2.events`` (per CMOS or merged per observation), ``ep.l3.image``,
    ``ep.l3.expmap``, ``ep.l3.lc``, ``ep.l3.spectrum``, ``ep.alert.voevent``; ``xray.events`` is an
    event list of any mission brought in from an archive (``xray_ep.archive``).

Event lists (OGIP/HEASARC, as in Chandra/XMM/Swift files)
    FITS binary table extension ``EVENTS`` (HDUCLASS='OGIP', HDUCLAS1='EVENTS') plus a ``GTI``
    extension with ``START``/``STOP`` (s).  L1 columns: TIME (s, mission elapsed time), RAWX, RAWY
    (pixel, per-chip), PHA (chan).  L2 columns: TIME, X, Y (sky pixel; the X and Y columns carry
    TCTYP/TCRVL/TCRPX/TCDLT/TCUNI: ``RA---TAN``/``DEC--TAN``, deg), RA, DEC (deg), PI (chan),
    ENERGY (keV), plus RAWX, RAWY, DETX, DETY, PHA kept for traceability.  Headers: OBS_ID, CMOS_ID
    (per-CMOS files), TSTART, TSTOP, TELESCOP, INSTRUME, EXPOSURE, MJDREFI/MJDREFF, TIMESYS,
    TIMEUNIT, RA_NOM/DEC_NOM/PA_NOM; L1 also NBADPKT (telemetry packets rejected by the CRC check).

Point-spread function (CALDB stand-in, written by L2 into the EVENTS header)
    A circular core + halo Gaussian: ``PSFMODEL = 'GAUSS2'``, ``PSFSIG1`` (core sigma, arcsec),
    ``PSFSIG2`` (halo sigma, arcsec), ``PSFFRAC2`` (fraction of the photons in the halo).  L3
    stages use it when present (aperture size, aperture correction, wings of bright sources) and
    treat the PSF as unknown (point-like at the cell size) otherwise, e.g. for Chandra files.

Aspect histogram and exposure map
    L2 event lists carry an ``ASPHIST`` extension: the attitude on a regular grid of good time,
    columns TIME (s, bin start), DURATION (s of good time in the bin), RA, DEC, ROLL (deg), so an
    exposure map can be made without the attitude file.  ``ep.l3.expmap`` images are seconds of
    good time per sky pixel on the grid of the counts image (same WCS and physical keywords).

Times
    Mission elapsed time (MET) in seconds of TT since ``MJDREFI + MJDREFF`` (2024-01-01T00:00 TT).

Instrument geometry (the CALDB stand-in)
    A ``MOSAIC`` x ``MOSAIC`` mosaic of square CMOS chips of ``CHIP_SIZE`` pixels separated by
    ``CHIP_GAP`` pixels.  Detector coordinates DETX/DETY are in pixels, origin at the optical axis
    (the centre of the mosaic).  Chip ``cmosNN`` (``NN = row * MOSAIC + col``) has its pixel (0, 0)
    lower-left corner at ``chip_origin(NN)``; an event at RAWX, RAWY is at
    ``DETX = origin_x + RAWX + 0.5``, ``DETY = origin_y + RAWY + 0.5``.

Attitude and roll
    The attitude (RA, DEC) is the sky position of the optical axis.  ROLL is the position angle
    (deg, North through East) of the +DETY axis.  With ROLL = 0, +DETY points North and +DETX points
    West (like a sky image with East to the left).  In standard (gnomonic) coordinates ``xi``
    (toward East) and ``eta`` (toward North), in degrees:
    ``xi = s * (-DETX cos(ROLL) + DETY sin(ROLL))``, ``eta = s * (DETX sin(ROLL) + DETY cos(ROLL))``
    with ``s = PIXEL_SCALE_ARCSEC / 3600``.

Energy scale
    PHA is per chip: ``E_keV = GAIN_OFFSET_KEV + (PHA + 0.5) * gain_kev_per_chan(cmos)``.  PI is on a
    common 10 eV grid: ``PI = floor(ENERGY / PI_KEV_PER_CHAN)``.

Aux files (FITS)
    Attitude: extension ``ATTITUDE`` with TIME (s), RA, DEC, ROLL (deg).  Orbit: extension
    ``ORBIT`` with TIME (s), X, Y, Z (km, geocentric equatorial J2000/GCRS).  Both carry OBS_ID,
    TSTART, TSTOP.  In an archive directory they are named ``aux_filename(obs_id, kind)``.

L0 telemetry (``{obs_id}.l0``), big-endian
    File header ``FILE_HEADER`` (``FILE_HEADER_SIZE`` bytes): magic ``b"EPL0"``, format version
    (u16), header size (u16), OBS_ID (16 bytes ASCII, NUL padded), TSTART (f64), TSTOP (f64),
    frame time (f32), number of packets (u32), CRC32 of the preceding bytes (u32).
    Then packets, each ``PACKET_HEADER`` + payload + CRC32 (u32): sync word ``SYNC``
    (0x1ACFFC1D, the CCSDS attached sync marker), CMOS index (u8), flags (u8), per-CMOS sequence
    count (u16), frame time (f64, MET s), event count (u16); payload: ``event count`` x
    (RAWX u16, RAWY u16, PHA u16); the CRC32 (zlib) covers everything after the sync word up to the
    end of the payload.  Only non-empty frames are sent; a frame with more than
    ``MAX_EVENTS_PER_PACKET`` events spans several packets with the same frame time.
"""

from __future__ import annotations

import struct
from typing import Final

# -- product types ---------------------------------------------------------------------------------
L0_TELEMETRY: Final = "ep.l0.telemetry"
AUX_ATTITUDE: Final = "ep.aux.attitude"
AUX_ORBIT: Final = "ep.aux.orbit"
L1_EVENTS: Final = "ep.l1.events"
L2_EVENTS: Final = "ep.l2.events"
L3_IMAGE: Final = "ep.l3.image"
L3_EXPMAP: Final = "ep.l3.expmap"
L3_LC: Final = "ep.l3.lc"
L3_SPECTRUM: Final = "ep.l3.spectrum"
ALERT_VOEVENT: Final = "ep.alert.voevent"
ARCHIVE_EVENTS: Final = "xray.events"
"""An event list from a mission archive (Chandra, XMM-Newton, NICER, RXTE...), see ``xray_ep.archive``."""

# -- mission and time ------------------------------------------------------------------------------
TELESCOP: Final = "EP-SIM"
INSTRUME: Final = "WXT-SIM"
MJDREFI: Final = 60310
MJDREFF: Final = 0.0
TIMESYS: Final = "TT"
TIMEUNIT: Final = "s"
FRAME_TIME: Final = 0.05
"""CMOS frame (readout) time, s: the time resolution of the events."""

# -- instrument geometry ---------------------------------------------------------------------------
MOSAIC: Final = 4
CHIP_SIZE: Final = 512
CHIP_GAP: Final = 16
PIXEL_SCALE_ARCSEC: Final = 6.0
N_CMOS: Final = MOSAIC * MOSAIC


def cmos_name(index: int) -> str:
    """The CMOS id string of mosaic position ``index`` (``cmos00`` ... ``cmos15``)."""
    return f"cmos{index:02d}"


def cmos_index(name: str) -> int:
    """The mosaic position of a CMOS id string (inverse of ``cmos_name``)."""
    if not (name.startswith("cmos") and name[4:].isdigit()) or not 0 <= int(name[4:]) < N_CMOS:
        raise ValueError(f"not a CMOS id: {name!r} (expected cmos00 .. cmos{N_CMOS - 1:02d})")
    return int(name[4:])


def chip_origin(index: int) -> tuple[float, float]:
    """DETX, DETY (pixels) of the lower-left corner of chip ``index`` in the focal plane."""
    row, col = divmod(index, MOSAIC)
    pitch = CHIP_SIZE + CHIP_GAP
    half = (MOSAIC * pitch - CHIP_GAP) / 2.0
    return col * pitch - half, row * pitch - half


# -- point-spread function (the CALDB stand-in) ------------------------------------------------------
PSF_CORE_SIGMA_ARCSEC: Final = 15.0
PSF_HALO_SIGMA_ARCSEC: Final = 60.0
PSF_HALO_FRACTION: Final = 0.1
KW_PSFMODEL: Final = "PSFMODEL"
ASPHIST_EXT: Final = "ASPHIST"
ASPHIST_BIN_S: Final = 10.0
"""Length of the aspect histogram's time bins (s): the attitude drifts by < 1" in that time."""


def psf_keywords() -> dict[str, tuple[object, str]]:
    """The EVENTS header keywords describing the PSF (see the module docstring)."""
    return {KW_PSFMODEL: ("GAUSS2", "PSF: core + halo circular Gaussians"),
            "PSFSIG1": (PSF_CORE_SIGMA_ARCSEC, "[arcsec] PSF core sigma"),
            "PSFSIG2": (PSF_HALO_SIGMA_ARCSEC, "[arcsec] PSF halo sigma"),
            "PSFFRAC2": (PSF_HALO_FRACTION, "fraction of PSF photons in the halo")}


# -- energy scale ----------------------------------------------------------------------------------
GAIN_OFFSET_KEV: Final = 0.0
PI_KEV_PER_CHAN: Final = 0.01
N_PI: Final = 1024
N_PHA: Final = 4096
BAND_KEV: Final = (0.5, 4.0)


def gain_kev_per_chan(index: int) -> float:
    """The linear gain (keV per PHA channel) of chip ``index``: 5 eV/chan within a few per cent."""
    return 0.005 * (1.0 + 0.01 * ((index * 7) % 9 - 4))


# -- sky pixel frame of L2 event lists ------------------------------------------------------------
SKY_NPIX: Final = 3072
SKY_CRPIX: Final = (SKY_NPIX + 1) / 2.0

# -- columns and units -----------------------------------------------------------------------------
EVENTS_EXT: Final = "EVENTS"
GTI_EXT: Final = "GTI"
ATTITUDE_EXT: Final = "ATTITUDE"
ORBIT_EXT: Final = "ORBIT"

L1_COLUMNS: Final = {"TIME": "s", "RAWX": "pixel", "RAWY": "pixel", "PHA": "chan"}
L2_COLUMNS: Final = {"TIME": "s", "X": "pixel", "Y": "pixel", "RA": "deg", "DEC": "deg", "PI": "chan",
                     "ENERGY": "keV", "RAWX": "pixel", "RAWY": "pixel", "DETX": "pixel",
                     "DETY": "pixel", "PHA": "chan"}
ATTITUDE_COLUMNS: Final = {"TIME": "s", "RA": "deg", "DEC": "deg", "ROLL": "deg"}
ORBIT_COLUMNS: Final = {"TIME": "s", "X": "km", "Y": "km", "Z": "km"}
GTI_COLUMNS: Final = {"START": "s", "STOP": "s"}

# -- header keywords -------------------------------------------------------------------------------
KW_OBS_ID: Final = "OBS_ID"
KW_CMOS_ID: Final = "CMOS_ID"
KW_NBADPKT: Final = "NBADPKT"
KW_TSTART: Final = "TSTART"
KW_TSTOP: Final = "TSTOP"
KW_EXPOSURE: Final = "EXPOSURE"

# -- aux files -------------------------------------------------------------------------------------
EARTH_RADIUS_KM: Final = 6378.137
ELV_MIN_DEG: Final = 0.0
"""Sky photons reach the detector only while the pointing is above the Earth limb by this much."""


def aux_filename(obs_id: str, kind: str) -> str:
    """Archive file name of an aux file: ``kind`` is ``"att"`` (attitude) or ``"orb"`` (orbit)."""
    if kind not in ("att", "orb"):
        raise ValueError(f"aux kind must be 'att' or 'orb', got {kind!r}")
    return f"{obs_id}_{kind}.fits"


def aux_glob(obs_id: str) -> str:
    """The glob matching every aux file of ``obs_id`` in an archive directory (``aux_filename``)."""
    return f"{obs_id}_*.fits"


# -- L0 telemetry format ---------------------------------------------------------------------------
FILE_MAGIC: Final = b"EPL0"
FORMAT_VERSION: Final = 1
FILE_HEADER: Final = struct.Struct(">4sHH16sddfI")
FILE_HEADER_SIZE: Final = FILE_HEADER.size + 4
"""The file header followed by its CRC32."""
SYNC: Final = 0x1ACFFC1D
SYNC_BYTES: Final = SYNC.to_bytes(4, "big")
PACKET_HEADER: Final = struct.Struct(">IBBHdH")
"""sync, CMOS index, flags, sequence count, frame time, event count."""
EVENT_BYTES: Final = 6
"""RAWX, RAWY, PHA: three big-endian u16 per event."""
CRC_BYTES: Final = 4
MAX_EVENTS_PER_PACKET: Final = 1024
