"""The ``sites`` setting: a folder root given relative is taken from the working directory
(products' paths are recorded absolute, so a relative root would hold nothing); URLs stay as given."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyweave.config.settings import Settings
from skyweave.model.sites import site_of


def test_relative_folder_roots_are_made_absolute_and_urls_are_kept(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(store=str(tmp_path / "st"),
                        sites={"desk": "site-desk", "hpc": "s3://bucket/hpc", "far": "/data/far"})
    assert settings.sites == {"desk": str(tmp_path / "site-desk"), "hpc": "s3://bucket/hpc", "far": "/data/far"}
    assert site_of(str(tmp_path / "site-desk" / "products" / "x.dat"), settings.sites) == "desk"


def test_site_grace_is_a_setting_that_cannot_be_negative() -> None:
    assert Settings(site_grace_s=5).site_grace_s == 5.0
    with pytest.raises(ValueError, match="site_grace_s"):
        Settings(site_grace_s=-1)
