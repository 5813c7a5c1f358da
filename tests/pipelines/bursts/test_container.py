"""The burst pipeline's Dockerfile and its stage command line (Docker itself is not run here).

Each task runs alone on files, as in the image: a small model is trained, a simulated chunk with
an injected burst is scored (the detector run as the model's version), and the follow-up chain
(cut-out, plot, VOEvent) runs stage by stage, each taking the previous stage's JSON as ``@FILE``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import voeventparse

from nenufar_bursts import conventions as cv
from nenufar_bursts.simulate import simulate_stream
from nenufar_bursts.stage import STAGES
from tests.pipelines.dockerfile import check_dockerfile


def stage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nenufar_bursts.stage", *args], capture_output=True, text=True,
                          timeout=240, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_dockerfile_builds_from_a_local_base_and_copies_existing_files() -> None:
    check_dockerfile("pipelines/nenufar_bursts", "nenufar_bursts.stage")


def test_stage_help_lists_every_task() -> None:
    done = stage("--help")
    assert done.returncode == 0, done.stderr
    for name in STAGES:
        assert name in done.stdout


def test_tasks_chain_as_separate_processes(tmp_path: Path) -> None:
    train = ok(stage("train_model", "--n-chunks", "80", "--out", str(tmp_path / "m"),
                     "--result", str(tmp_path / "train.json")))
    version = train["model"]["version"]
    assert train["model"]["type"] == cv.MODEL and version.endswith("n80")
    chunks = simulate_stream(tmp_path / "chunks", "bstage", 7, 6)
    chunk, previous = chunks[4], chunks[3]                 # chunk 4 holds one burst (DM 0.26, S/N 20)
    (burst,) = [t for t in chunk["truth"] if t["kind"] == "burst"]
    # the detector's version names its model: run as another version, it asks for that model
    refused = stage("score_chunk", "--chunk", chunk["path"], "--model", f"@{tmp_path / 'train.json'}#model",
                    "--out", str(tmp_path / "det"))
    assert refused.returncode == 3 and "needs a 'nenufar.bursts.model' product" in refused.stderr
    det = ok(stage("score_chunk", "--chunk", chunk["path"], "--previous", previous["path"], "--model",
                   f"@{tmp_path / 'train.json'}#model", "--task-version", version, "--out", str(tmp_path / "det"),
                   "--result", str(tmp_path / "det.json")))
    assert det["version"] == version and det["attributes"]["n_detections"] == 1
    best = det["attributes"]["best"]
    assert abs(best["time_s"] - burst["time_s"]) < 0.5 and abs(best["dm"] - burst["dm"]) < 0.05, (best, burst)
    ok(stage("cutout", "--detections", f"@{tmp_path / 'det.json'}", "--chunk", chunk["path"], "--previous",
             previous["path"], "--out", str(tmp_path / "fu"), "--result", str(tmp_path / "cut.json")))
    plot = ok(stage("plot_burst", "--cut", f"@{tmp_path / 'cut.json'}", "--out", str(tmp_path / "fu"),
                    "--result", str(tmp_path / "plot.json")))
    assert Path(plot["path"]).read_bytes().startswith(b"\x89PNG")
    voe = ok(stage("make_voevent", "--cut", f"@{tmp_path / 'cut.json'}", "--plot", f"@{tmp_path / 'plot.json'}",
                   "--out", str(tmp_path / "fu")))
    with open(voe["path"], "rb") as fh:
        packet = voeventparse.load(fh)
    assert voeventparse.valid_as_v2_0(packet) and voe["attributes"]["index"] == 4
