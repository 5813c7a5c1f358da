"""Real event lists that nobody here made, and where the tests find them.

* stingray (``pip install stingray``, in the ``[test]`` extra of ``pipelines/xray_ep``) ships in
  ``stingray/tests/data/``: ``chandra_test.fits`` (Chandra ACIS-S, M82, ObsID 10027, 4,612
  events), ``xte_test.evt.gz`` (RXTE PCA, 4U 1636-53, 1,000 events) and ``xte_gx_test.evt.gz``
  (RXTE PCA pointed at the M82 ULX, 3,518 events, barycentred), also ``xmm_test.fits``,
  ``nomission.evt``, ``lcurveA.fits`` (a light curve) used for unusual files.
* NICER: no wheel on PyPI ships a NICER event list (pint-pulsar 1.1.8's wheel has only
  ``pint/data/examples``: timing files and a Fermi LAT FT1 file).  PINT's *source distribution* on
  PyPI (``pint_pulsar-1.1.8.tar.gz``) has them in ``tests/datafile/``: ``ngc300nicer_bary.evt``
  (NGC 300 ULX1, ObsID 1034200101), ``J0218_nicer_2070030405_cleanfilt_cut_bary.evt`` (PSR
  J0218+4232) and ``sgr1830kgfilt.evt`` (SGR 1830-0645).  ``make`` downloads that sdist with pip
  and keeps these three files in ``.venv/test-data/nicer`` (``SKYWEAVE_NICER_DATA`` overrides).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

NICER_FILES = ("ngc300nicer_bary.evt", "J0218_nicer_2070030405_cleanfilt_cut_bary.evt", "sgr1830kgfilt.evt")
ROOT = Path(__file__).resolve().parents[3]


def stingray_file(name: str) -> Path:
    """A file of ``stingray/tests/data``, located without importing stingray."""
    spec = importlib.util.find_spec("stingray")
    if spec is None or spec.origin is None:
        pytest.skip("stingray is not installed: pip install -e 'pipelines/xray_ep[test]'")
    return Path(spec.origin).parent / "tests" / "data" / name


def nicer_file(name: str) -> Path:
    """One of PINT's NICER event lists (see the module docstring)."""
    folder = Path(os.environ.get("SKYWEAVE_NICER_DATA", ROOT / ".venv" / "test-data" / "nicer"))
    path = folder / name
    if not path.is_file():
        pytest.skip(f"{path} is missing: `make unit` fetches PINT's NICER event lists "
                    "(pip download --no-binary :all: pint-pulsar==1.1.8)")
    return path
