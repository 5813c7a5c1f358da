"""The pipeline's Dockerfile and its stage entry point (Docker itself is not run here).

Checked: the image builds FROM a local base (an ``ARG`` default naming no registry), every
``COPY`` source exists in the build context (the repository root), the entry point is
``python -m xray_ep.stage``, and that module works outside Docker: ``--help`` lists the stages,
``decode_cmos`` on a simulated telemetry file writes the L1 list with every event of the detector,
and a broken file ends with exit status 2 and the ``Fatal`` message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from tests.pipelines.dockerfile import check_dockerfile
from xray_ep import conventions as cv
from xray_ep.simulate import simulate_observation
from xray_ep.stage import STAGES


def stage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xray_ep.stage", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_dockerfile_builds_from_a_local_base_and_copies_existing_files() -> None:
    check_dockerfile("pipelines/xray_ep", "xray_ep.stage")


def test_stage_help_lists_every_stage() -> None:
    done = stage("--help")
    assert done.returncode == 0, done.stderr
    for name in STAGES:
        assert name in done.stdout
    sub = stage("decode_cmos", "--help")
    assert sub.returncode == 0 and "--l0" in sub.stdout and "--cmos" in sub.stdout and "--out" in sub.stdout


def test_decode_cmos_runs_alone_on_a_simulated_file(tmp_path: Path) -> None:
    sim = simulate_observation(tmp_path / "obs", "ep0301", 41, n_cmos=2)
    cmos = sim["cmos"][1]
    done = stage("decode_cmos", "--l0", sim["l0"], "--cmos", cmos, "--out", str(tmp_path / "l1"))
    assert done.returncode == 0, done.stderr
    product = json.loads(done.stdout)
    assert product["type"] == cv.L1_EVENTS and product["detector"] == cmos and product["obs_id"] == "ep0301"
    path = Path(product["path"])
    assert path.parent == tmp_path / "l1"
    with np.load(sim["events"]) as npz:
        expected = int(np.sum(npz["CMOS"] == cv.cmos_index(cmos)))
    with fits.open(path) as hdul:
        assert len(hdul[cv.EVENTS_EXT].data) == expected == product["attributes"]["n_events"]
        assert hdul[cv.EVENTS_EXT].header["CMOS_ID"] == cmos


def test_a_broken_file_exits_2_with_the_fatal_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.l0"
    bad.write_bytes(b"not telemetry at all, just some bytes" * 4)
    done = stage("decode_cmos", "--l0", str(bad), "--cmos", "cmos00", "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "not EP L0 telemetry" in done.stderr and "hint" in done.stderr
    assert done.stdout == ""
