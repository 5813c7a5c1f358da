"""An Einstein Probe-like X-ray transient pipeline for skyweave.

Each stage module is written as if by a different team and only shares ``xray_ep.conventions``
(product types, column names, header keywords, units, the telemetry format and the instrument
geometry):

* ``xray_ep.simulate`` — seeded observation simulator (L0 telemetry, attitude, orbit, truth);
* ``xray_ep.l1`` — L0 telemetry → per-CMOS L1 event lists (``list_cmos``, ``decode_cmos``);
* ``xray_ep.l2`` — L1 → calibrated L2 event lists (``calibrate``, aux providers, ``merge_events``).
"""

__version__ = "0.1.0"
