"""Names and paths a request gives never reach outside where they belong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyweave.server.safety import PathRefused, confined, safe_name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "a\x00b",
                                  ".hidden", "x\n", " x", "a" * 201, "\x7f"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(PathRefused):
        safe_name(name)


@pytest.mark.parametrize("name", ["vis.ms.tar", "image (1).fits", "données.fits", "a" * 200])
def test_plain_names_pass(name: str) -> None:
    assert safe_name(name) == name


def test_paths_stay_inside_their_root(tmp_path: Path) -> None:
    root = tmp_path / "workflows"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "wf.py").write_text("")
    (tmp_path / "secret.py").write_text("")
    os.symlink(tmp_path / "secret.py", root / "link.py")
    os.symlink(tmp_path, root / "up")
    assert confined(root, "sub/wf.py") == (root / "sub" / "wf.py").resolve()
    for bad in ["../secret.py", "/etc/passwd", "sub/../../secret.py", "link.py", "up/secret.py",
                "sub\\..\\..\\secret.py", "a\x00.py", "", "~/x.py"]:
        with pytest.raises(PathRefused):
            confined(root, bad)
