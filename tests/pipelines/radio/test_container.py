"""The radio pipeline's Dockerfile and its stage command line (Docker itself is not run here).

Each task runs alone on files: a sub-band is extracted, calibrated and self-calibrated by three
separate processes, the JSON printed by one stage being the input (``@FILE``) of the next, and the
gains it writes are the simulator's truth within the calibration tolerance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from radio_nenufar import conventions as cv
from radio_nenufar.calibrate import read_gains
from radio_nenufar.simulate import simulate_observation, truth_gains
from radio_nenufar.stage import STAGES
from tests.pipelines.dockerfile import check_dockerfile


def stage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "radio_nenufar.stage", *args], capture_output=True, text=True,
                          timeout=180, check=False)


def test_dockerfile_builds_from_a_local_base_and_copies_existing_files() -> None:
    check_dockerfile("pipelines/radio_nenufar", "radio_nenufar.stage")


def test_stage_help_lists_every_task() -> None:
    done = stage("--help")
    assert done.returncode == 0, done.stderr
    for name in STAGES:
        assert name in done.stdout
    sub = stage("selfcal_step", "--help")
    assert sub.returncode == 0 and "--cal" in sub.stdout and "--amplitude-from" in sub.stdout
    assert "--state" not in sub.stdout                       # a loop's carried state is not an input


def _json_out(done: subprocess.CompletedProcess[str], path: Path) -> Any:
    assert done.returncode == 0, done.stderr
    path.write_text(done.stdout)
    return json.loads(done.stdout)


def test_tasks_chain_as_separate_processes(tmp_path: Path) -> None:
    sim = simulate_observation(tmp_path / "sim", "nenu0301", 7, subbands_mhz=(60.0,), n_times=3)
    part = _json_out(stage("extract_subband", "--vis", str(sim["vis"]), "--subband", "0", "--out",
                           str(tmp_path / "parts")), tmp_path / "part.json")
    assert part["type"] == cv.VIS_SUBBAND and part["detector"] == "sb000" and part["obs_id"] == "nenu0301"
    cal = _json_out(stage("calibrate", "--vis", f"@{tmp_path / 'part.json'}", "--model", str(sim["calmodel"]),
                          "--out", str(tmp_path / "cal"), "--result", str(tmp_path / "cal-result.json")),
                    tmp_path / "cal.json")
    assert json.loads((tmp_path / "cal-result.json").read_text()) == cal
    assert cal["ok"] and cal["gains"]["type"] == cv.GAINS
    sc = _json_out(stage("selfcal_step", "--vis", part["path"], "--cal", f"@{tmp_path / 'cal.json'}", "--out",
                         str(tmp_path / "sc")), tmp_path / "sc.json")
    assert sc["ok"] and sc["iteration"] == 1 and Path(sc["image"]["path"]).parent == tmp_path / "sc"
    truth = truth_gains(json.loads(Path(sim["truth"]).read_text()))[0]
    gains = read_gains(sc["gains"]["path"])
    ratio = gains / (truth * np.exp(-1j * np.angle(truth[cv.REF_ANT])))
    assert np.max(np.abs(np.degrees(np.angle(ratio)))) < 1.0 and np.max(np.abs(np.abs(ratio) - 1)) < 0.02


def test_bad_input_exits_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a visibility file")
    done = stage("list_subbands", "--vis", str(bad), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and done.stdout == ""
    assert "bad.npz is not a visibility file" in done.stderr and "hint: give the .npz" in done.stderr
    missing = stage("calibrate", "--vis", str(tmp_path / "nowhere.npz"), "--model", str(bad), "--out",
                    str(tmp_path / "o"))
    assert missing.returncode == 2 and "nowhere.npz is not a visibility file" in missing.stderr
