"""``python -m skyweave.execute``: one job in, one outcome out, the exit status says which kind.

(Everything an executor must do through it — timeouts, cancel, memory, products — is proved by
the ``subprocess`` executor in the contract suite, which runs nothing but this entry point.)
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from skyweave import execute
from skyweave.aspects.base import AspectSettings
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.job import JOB_FORMAT, JobEnv, decode_job, decode_outcome, encode_job
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityNeedsInput

from .helpers import by_module, by_path, dispatch


def _run(args: list[str], *, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "skyweave.execute", *args], input=stdin, capture_output=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, check=False, timeout=120)


def test_a_job_round_trips_through_its_file_format(env: ExecutionEnv) -> None:
    d = dispatch(by_module("add"), {"x": 1, "y": 2}, timeout_s=5.0, memory_mb=100)
    assert decode_job(encode_job(d, env)) == (d, env)
    full = dataclasses.replace(  # every field away from its default
        env, aspects=("a:B",), aspect_settings=AspectSettings(authority="org.example"), builtin_aspects=False,
        validate_checksums=False, preload=("numpy",), import_path=("/here",), extra={"k": "v"},
        storage="file:///elsewhere")
    assert decode_job(encode_job(d, full)) == (d, full)
    # a field added to ExecutionEnv must be added to the job format too (else a job drops it)
    carried = set(JobEnv.__struct_fields__) - {"authority"} | {"aspect_settings"}
    assert {f.name for f in dataclasses.fields(ExecutionEnv)} == carried


def test_a_finished_activity_writes_its_outcome_atomically_and_exits_0(env: ExecutionEnv, tmp_path: Path) -> None:
    job, out, started = tmp_path / "job.json", tmp_path / "out" / "outcome.json", tmp_path / "started"
    out.parent.mkdir()
    d = dispatch(by_path("make_products"), {"n": 1})
    job.write_bytes(encode_job(d, env))
    result = _run([str(job), "--outcome", str(out), "--started", str(started)])
    assert result.returncode == execute.EXIT_FINISHED, result.stderr.decode()
    outcome = decode_outcome(out.read_bytes())
    assert isinstance(outcome, ActivityFinished) and outcome.activity_id == d.activity_id
    assert all(Path(p.uri.removeprefix("file://")).is_relative_to(env.storage_root) for p in outcome.products)
    assert float(started.read_text()) <= outcome.started_at <= outcome.at  # marked just before it ran
    assert sorted(p.name for p in out.parent.iterdir()) == ["outcome.json"]  # no temporary left


@pytest.mark.parametrize(("task", "arguments", "status", "kind"), [
    ("boom", {}, execute.EXIT_FAILED, ActivityFailed),
    ("needs_attitude", {"obs_id": "obs-1"}, execute.EXIT_NEEDS_INPUT, ActivityNeedsInput),
])
def test_stdin_to_stdout_and_the_status_says_what_happened(
        env: ExecutionEnv, task: str, arguments: dict[str, str], status: int, kind: type) -> None:
    result = _run(["-"], stdin=encode_job(dispatch(by_path(task), arguments), env))
    assert result.returncode == status, result.stderr.decode()
    outcome = decode_outcome(result.stdout)
    assert isinstance(outcome, kind)
    if isinstance(outcome, ActivityFailed):
        assert "boom with 42" in outcome.traceback and outcome.retryable is True


def test_an_outcome_that_cannot_be_written_exits_4(env: ExecutionEnv, tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_bytes(encode_job(dispatch(by_path("noop")), env))
    result = _run([str(job), "--outcome", str(tmp_path / "no" / "such" / "dir" / "outcome.json")])
    assert result.returncode == execute.EXIT_NO_OUTCOME
    assert b"cannot write the outcome" in result.stderr


def _bad(tmp_path: Path, data: bytes, capsys: pytest.CaptureFixture[str]) -> str:
    job, out = tmp_path / "job.json", tmp_path / "outcome.json"
    job.write_bytes(data)
    assert execute.main([str(job), "--outcome", str(out)]) == execute.EXIT_BAD_JOB
    assert not out.exists()  # nothing ran, nothing written
    return capsys.readouterr().err


def test_a_malformed_job_file_is_refused_saying_what_is_wrong(
        env: ExecutionEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _bad(tmp_path, b"{not json", capsys)
    assert "is not a skyweave job: JSON is malformed" in err
    assert f"format {JOB_FORMAT!r}" in err and "docs/operations.md" in err
    job = msgspec.json.decode(encode_job(dispatch(by_path("noop")), env))
    job["dispatch"]["attempt"] = "first"
    assert "Expected `int`, got `str` - at `$.dispatch.attempt`" in _bad(tmp_path, msgspec.json.encode(job), capsys)
    job["dispatch"]["attempt"], job["format"] = 1, "skyweave.job/99"
    assert "at `$.format`" in _bad(tmp_path, msgspec.json.encode(job), capsys)


def test_a_missing_job_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute.main([str(tmp_path / "absent.json")]) == execute.EXIT_BAD_JOB
    assert "cannot read the job file" in capsys.readouterr().err
