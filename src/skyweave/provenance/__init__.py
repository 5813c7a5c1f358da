"""Provenance exports: IVOA identifiers, W3C PROV (JSON, PROV-N, XML), the IVOA ProvDM flavour,
and provenance keywords in FITS products.  ``export`` is the one entry point the CLI uses."""

from __future__ import annotations

from skyweave.provenance.export import FORMATS, export

__all__ = ["FORMATS", "export"]
