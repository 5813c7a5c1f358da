"""Where products, logs and code snapshots go (``Settings.store_dir``): the ``storage`` setting,
else beside an embedded store; never a silent ``./.skyweave`` for a store on a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyweave.config.settings import Settings
from skyweave.errors import SkyweaveError


def test_an_embedded_store_keeps_its_files_beside_it(tmp_path: Path) -> None:
    assert Settings(store=str(tmp_path / "st")).store_dir == tmp_path / "st"
    assert Settings(store=f"sqlite:///{tmp_path}/run.db").store_dir == tmp_path / "run.files"


def test_storage_says_where_files_go_whatever_the_store(tmp_path: Path) -> None:
    for store in (str(tmp_path / "st"), "postgresql://db.example/skyweave"):
        assert Settings(store=store, storage=str(tmp_path / "files")).store_dir == tmp_path / "files"


def test_a_server_store_without_storage_is_an_error_with_the_fix(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(store="postgresql://db.example/skyweave")
    with pytest.raises(SkyweaveError, match=r"(?s)postgresql:// store keeps no files.*SKYWEAVE_STORAGE"):
        _ = settings.store_dir
    with pytest.raises(SkyweaveError, match="keeps no files"):
        settings.bus_url(shared=True)
    assert settings.bus_url(shared=False) == "memory://"
    assert list(tmp_path.iterdir()) == []
