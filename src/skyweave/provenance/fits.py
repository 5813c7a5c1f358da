"""FITS products point back to their provenance: keywords and HISTORY cards in the primary HDU.

``FitsProvenanceAspect`` (name ``fits-provenance``) registers a hook that runs on every FITS output
(``.fits``, ``.fit``, ``.fts``, optionally gzipped) of an activity just before the file is moved
into storage and checksummed (``executors.products.PREPARE_OUTPUT``), so the recorded checksum is
that of the stamped file.  It writes, in the primary header::

    SW_ACT  = 'act-01…'                          / skyweave activity that made this file
    SW_TASK = 'calibrate'                        / skyweave task
    SW_TVER = '2.1'                              / skyweave task version
    SW_RUN  = 'run-01…'                          / skyweave run
    SW_PROD = 'prd-01…'                          / skyweave product id of this file
    PROVURI = 'ivo://skyweave.local/activity?act-01…'
    HISTORY made by skyweave activity act-01… task calibrate@2.1 (run run-01…)

It is **opt-in**, per task by pattern, like any aspect: in ``skyweave.toml``
``aspects = ["skyweave.provenance.fits:FitsProvenanceAspect"]`` (every task) or
``"skyweave.provenance.fits:FitsProvenanceAspect?pattern=l2_*"``.  Opt-in because it rewrites
files the task wrote (a header that has no room left makes astropy rewrite the whole file) and
imports astropy in the worker; adding it to ``executors.boundary.builtin_aspects`` makes it a
default.  The IVOA authority is ``Settings.authority``, handed over through ``configure``.  A
file that astropy cannot read as FITS is left untouched (a warning in the activity log), never
failing the activity.

astropy is an optional dependency of skyweave (the engine never needs it): install it with
``pip install 'skyweave[fits]'``.  Without it the aspect refuses to be created, so a worker
configured with it says so at start instead of failing every FITS-writing activity.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from skyweave.aspects.base import Aspect, AspectSettings
from skyweave.errors import DefinitionError
from skyweave.model.context import ActivityContext
from skyweave.model.product import Product
from skyweave.provenance.ids import DEFAULT_AUTHORITY, activity_id, check_authority

PREPARE_OUTPUT = "skyweave.prepare_output"
"""Same key as ``executors.products.PREPARE_OUTPUT`` (executors sit above this layer)."""

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")


def is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES)


def stamp_fits(path: Path, *, activity: str, task: str, version: str, run: str, product: str | None = None,
               authority: str = DEFAULT_AUTHORITY) -> None:
    """Write the provenance keywords and a HISTORY card into the primary header of ``path``."""
    from astropy.io import fits

    def update(header: Any) -> None:
        header["SW_ACT"] = (activity, "skyweave activity that made this file")
        header["SW_TASK"] = (task, "skyweave task") if len(task) <= 40 else task
        header["SW_TVER"] = (version, "skyweave task version") if len(version) <= 40 else version
        header["SW_RUN"] = (run, "skyweave run")
        if product is not None:
            header["SW_PROD"] = (product, "skyweave product id of this file")
        header["PROVURI"] = activity_id(activity, authority)
        header.add_history(f"made by skyweave activity {activity} task {task}@{version} (run {run})")

    if path.name.lower().endswith(".gz"):  # compressed: rewrite (update mode cannot recompress)
        tmp = path.with_name(f".sw-stamp-{path.name}")
        with fits.open(path, memmap=False) as hdul:
            update(hdul[0].header)
            hdul.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
        return
    with fits.open(path, mode="update", memmap=False) as hdul:
        update(hdul[0].header)


def _astropy_installed() -> bool:
    try:
        return importlib.util.find_spec("astropy") is not None
    except ImportError:  # an import hook that refuses it
        return False


class FitsProvenanceAspect(Aspect):
    """Stamps FITS outputs with the activity, task, version and run that made them."""

    name = "fits-provenance"

    def __init__(self, authority: str | None = None) -> None:
        if not _astropy_installed():
            raise DefinitionError(
                "the fits-provenance aspect needs astropy, which is not installed",
                hint="pip install 'skyweave[fits]' (or astropy) where the workers run, "
                     "or remove the aspect from the settings")
        self._given = authority is not None
        self.authority = check_authority(authority) if authority else DEFAULT_AUTHORITY

    def configure(self, settings: AspectSettings) -> None:
        """The authority of the settings, unless one was given to the constructor."""
        if not self._given:
            self.authority = check_authority(settings.authority)

    def before(self, ctx: ActivityContext) -> None:
        def prepare(product_id: str, product: Product) -> None:
            path = product.local_path
            if not is_fits(path):
                return
            try:
                stamp_fits(path, activity=ctx.activity_id, task=ctx.task.name, version=ctx.task.version,
                           run=ctx.run_id, product=product_id, authority=self.authority)
            except (OSError, ValueError) as exc:
                ctx.log.warning("fits-provenance: %s not stamped: %s", path.name, exc)

        ctx.extra.setdefault(PREPARE_OUTPUT, []).append(prepare)
