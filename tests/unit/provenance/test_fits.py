"""FITS outputs are stamped with their provenance before they are checksummed and stored."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from skyweave import Product, context, task, workflow
from skyweave.aspects import AspectSettings, load_aspect
from skyweave.client import Client
from skyweave.provenance import ids
from skyweave.provenance.fits import FitsProvenanceAspect
from skyweave.storage.local import LocalStorage

ASPECT = "skyweave.provenance.fits:FitsProvenanceAspect"


@task(version="3.2")
def make_image(obs_id: str, gz: bool = False) -> Product:
    path = context().output(f"{obs_id}_img.fits" + (".gz" if gz else ""))
    fits.PrimaryHDU(np.arange(100, dtype="float32").reshape(10, 10)).writeto(path)
    return Product(path, type="test.image", obs_id=obs_id)


@workflow
def images(obs_id: str = "o1") -> Any:
    return [make_image(obs_id=obs_id), make_image(obs_id=obs_id + "z", gz=True)]


def test_fits_outputs_carry_their_provenance_and_the_recorded_checksum(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=2, aspects=[ASPECT]) as client:
        handle = client.run(images, {"obs_id": "o1"})
        assert handle.status == "succeeded"
        products = client.store.find_products(run_id=handle.id)
        assert len(products) == 2
        for product in products:
            activity = client.store.get_activity(product.activity_id or "")
            path = LocalStorage.local_path(product.uri)
            with fits.open(path) as hdul:
                header = hdul[0].header
                assert header["SW_ACT"] == activity.id and header["SW_RUN"] == handle.id
                assert header["SW_TASK"] == "make_image" and header["SW_TVER"] == "3.2"
                assert header["SW_PROD"] == product.id
                assert header["PROVURI"] == ids.activity_id(activity.id)
                history = " ".join(str(h) for h in header["HISTORY"])
                assert f"made by skyweave activity {activity.id} task make_image@3.2" in history
                assert hdul[0].data.sum() == sum(range(100))  # the data are untouched
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert product.checksum == f"sha256:{digest}" and product.size == path.stat().st_size
            assert "fits-provenance" in activity.aspects


def test_without_the_aspect_files_are_left_alone(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=1) as client:
        handle = client.run(images, {"obs_id": "o2"})
        for product in client.store.find_products(run_id=handle.id):
            with fits.open(LocalStorage.local_path(product.uri)) as hdul:
                assert "SW_ACT" not in hdul[0].header


def test_the_authority_is_the_one_of_the_settings_handed_to_the_aspect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a skyweave.toml the aspect could have read behind the caller's back says otherwise
    (tmp_path / "skyweave.toml").write_text('authority = "toml.example.org"\n')
    monkeypatch.chdir(tmp_path)
    assert load_aspect(ASPECT, AspectSettings(authority="given.example.org")).authority == "given.example.org"
    assert load_aspect(ASPECT).authority == ids.DEFAULT_AUTHORITY
    assert FitsProvenanceAspect(authority="own.example.org").authority == "own.example.org"
    explicit = FitsProvenanceAspect(authority="own.example.org")
    explicit.configure(AspectSettings(authority="given.example.org"))
    assert explicit.authority == "own.example.org", "an authority given to the constructor wins"

    with Client(str(tmp_path / "st"), executor="threads", workers=1, aspects=[ASPECT],
                authority="client.example.org") as client:
        handle = client.run(images, {"obs_id": "o3"})
        product = client.store.find_products(run_id=handle.id)[0]
        with fits.open(LocalStorage.local_path(product.uri)) as hdul:
            assert hdul[0].header["PROVURI"] == ids.activity_id(product.activity_id or "", "client.example.org")
