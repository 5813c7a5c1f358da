"""LocalExecutor: real child processes, real timeouts, real crashes.  Nothing sleeps to wait:
every test collects outcomes until what it expects has arrived, or a deadline fails it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.local import LocalExecutor
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityStarted
from skyweave.model.specs import TaskKind
from skyweave.storage.local import LocalStorage

from .helpers import TASKS_IMPORT_ROOT, by_module, by_path, dispatch, run_until, wait_gone, wait_started


@pytest.fixture
def local(env: ExecutionEnv) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(env, processes=2)
    executor.start()
    yield executor
    executor.close()


@pytest.fixture
def single(env: ExecutionEnv) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(env, processes=1)
    executor.start()
    yield executor
    executor.close()


def test_runs_many_activities_one_final_outcome_each(local: LocalExecutor) -> None:
    batch = [dispatch(by_module("add"), {"x": i, "y": 1}) for i in range(200)]
    events: list[Outcome] = []
    local.submit(batch)
    assert local.active == 200
    final = run_until(local, [d.activity_id for d in batch], events=events)
    for i, d in enumerate(batch):
        outcome = final[d.activity_id]
        assert isinstance(outcome, ActivityFinished), outcome
        assert outcome.result == i + 1
    assert local.active == 0
    # a Started is only forwarded for an activity still running at collect time, never after its end
    ended: set[str] = set()
    for event in events:
        if isinstance(event, ActivityStarted):
            assert event.activity_id not in ended
        else:
            ended.add(event.activity_id)
    assert len({o.pid for o in final.values()}) == 2  # both children worked


def test_products_and_logs_from_a_child(local: LocalExecutor, env: ExecutionEnv) -> None:
    make = dispatch(by_path("make_products"), {"n": 1})
    chatty = dispatch(by_path("chatty"))
    local.submit([make, chatty])
    final = run_until(local, [make.activity_id, chatty.activity_id])
    made = final[make.activity_id]
    assert isinstance(made, ActivityFinished)
    assert all(LocalStorage.local_path(p.uri).is_file() for p in made.products)
    talked = final[chatty.activity_id]
    assert isinstance(talked, ActivityFinished)
    log = LocalStorage.local_path(talked.log_uri).read_text()
    assert "hello from print" in log
    assert "raw write to fd 1" in log
    assert "subprocess on fd 1" in log
    assert "hello from the activity logger" in log


def test_timeout_stops_the_child_and_the_executor_keeps_working(single: LocalExecutor) -> None:
    stuck = dispatch(by_path("hang"), timeout_s=0.5)
    behind = [dispatch(by_path("add"), {"x": i, "y": i}) for i in range(3)]
    events: list[Outcome] = []
    single.submit([stuck, *behind])
    pid = wait_started(single, stuck.activity_id, events).pid
    final = run_until(single, [stuck.activity_id] + [d.activity_id for d in behind], events=events)
    timed_out = final[stuck.activity_id]
    assert isinstance(timed_out, ActivityFailed)
    assert timed_out.error_type == "skyweave.TaskTimeout"
    assert timed_out.retryable is True
    assert "exceeded its timeout of 0.5 s" in timed_out.message
    for i, d in enumerate(behind):  # what was queued behind it ran on the replacement
        outcome = final[d.activity_id]
        assert isinstance(outcome, ActivityFinished)
        assert outcome.result == 2 * i
        assert outcome.pid != pid
    wait_gone(pid)


def test_timeout_of_a_command_also_stops_the_command(single: LocalExecutor, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    stuck = dispatch(f"sh -c 'echo $$ > {pid_file}; exec sleep 60'", name="sleeper",
                     kind=TaskKind.COMMAND, timeout_s=1.0)
    single.submit([stuck])
    outcome = run_until(single, [stuck.activity_id])[stuck.activity_id]
    assert isinstance(outcome, ActivityFailed)
    assert outcome.error_type == "skyweave.TaskTimeout"
    wait_gone(int(pid_file.read_text()))


def test_a_child_that_exits_is_reported_and_replaced(single: LocalExecutor) -> None:
    dying = dispatch(by_path("hard_exit"))
    after = dispatch(by_path("whoami"))
    single.submit([dying, after])
    final = run_until(single, [dying.activity_id, after.activity_id])
    died = final[dying.activity_id]
    assert isinstance(died, ActivityFailed)
    assert died.error_type == "skyweave.WorkerDied"
    assert died.retryable is True
    assert "exited with code 1" in died.message
    survivor = final[after.activity_id]
    assert isinstance(survivor, ActivityFinished)
    assert survivor.result != died.pid


def test_a_child_killed_by_a_signal_is_reported(single: LocalExecutor) -> None:
    killed = dispatch(by_path("kill_self"))
    single.submit([killed])
    outcome = run_until(single, [killed.activity_id])[killed.activity_id]
    assert isinstance(outcome, ActivityFailed)
    assert "killed by signal SIGKILL" in outcome.message
    again = dispatch(by_path("add"), {"x": 1, "y": 1})
    single.submit([again])
    assert isinstance(run_until(single, [again.activity_id])[again.activity_id], ActivityFinished)


def test_short_activities_do_not_wait_behind_a_long_one(local: LocalExecutor, tmp_path: Path) -> None:
    release = tmp_path / "release"
    long = dispatch(by_path("wait_for_file"), {"path": str(release)})
    short = [dispatch(by_path("add"), {"x": i, "y": 0}) for i in range(40)]
    events: list[Outcome] = []
    local.submit([long, *short])
    final = run_until(local, [d.activity_id for d in short], events=events)
    assert all(isinstance(o, ActivityFinished) for o in final.values())
    assert long.activity_id not in final
    release.touch()
    outcome = run_until(local, [long.activity_id])[long.activity_id]
    assert isinstance(outcome, ActivityFinished)
    assert outcome.result == "seen"


def test_higher_priority_runs_first(single: LocalExecutor, tmp_path: Path) -> None:
    release = tmp_path / "release"
    blocker = dispatch(by_path("wait_for_file"), {"path": str(release)})
    events: list[Outcome] = []
    single.submit([blocker])
    wait_started(single, blocker.activity_id, events)
    low = [dispatch(by_path("add"), {"x": i, "y": 0}, priority=0) for i in range(3)]
    urgent = dispatch(by_path("add"), {"x": 99, "y": 0}, priority=10)
    single.submit([*low, urgent])
    release.touch()
    run_until(single, [blocker.activity_id, urgent.activity_id] + [d.activity_id for d in low], events=events)
    order = [e.activity_id for e in events if isinstance(e, ActivityFinished)]
    assert order.index(urgent.activity_id) < min(order.index(d.activity_id) for d in low)


def test_children_import_aspects_from_the_directory_skyweave_started_in(env: ExecutionEnv, tmp_path: Path) -> None:
    """``skyweave run`` from the folder holding ``checks.py`` with ``aspects = ["checks:..."]``: the
    console script does not put that folder on ``sys.path`` (``python -m`` would), the env does."""
    folder = tmp_path / "started_here"
    folder.mkdir()
    (folder / "here_aspects.py").write_text(
        "from skyweave.aspects import Aspect\n"
        "class Stamp(Aspect):\n"
        "    name = 'stamp'\n")
    assert str(folder) not in sys.path
    executor = LocalExecutor(dataclasses.replace(env, aspects=("here_aspects:Stamp",),
                                                 import_path=(str(folder),)), processes=1)
    try:
        d = dispatch(by_path("noop"))
        executor.submit([d])
        outcome = run_until(executor, [d.activity_id])[d.activity_id]
        assert isinstance(outcome, ActivityFinished), outcome
        assert "stamp" in outcome.aspects
    finally:
        executor.close()
    assert str(folder) not in sys.path, "only the worker processes' path changed"


def test_children_that_die_as_they_start_make_the_executor_give_up(
    env: ExecutionEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exits_on_import.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # children get this sys.path; this process never imports it
    broken_env = dataclasses.replace(env, aspects=("exits_on_import:Never",))
    executor = LocalExecutor(broken_env, processes=1)
    try:
        d = dispatch(by_path("noop"))
        executor.submit([d])
        outcome = run_until(executor, [d.activity_id])[d.activity_id]
        assert isinstance(outcome, ActivityFailed)
        assert outcome.error_type == "skyweave.WorkerStartFailed"
        assert outcome.retryable is False
        assert "exited with code 3, 3 times in a row" in outcome.message
        later = dispatch(by_path("noop"))
        executor.submit([later])  # refused at once, no new processes
        assert isinstance(run_until(executor, [later.activity_id])[later.activity_id], ActivityFailed)
        assert executor.active == 0
    finally:
        executor.close()


def test_preloaded_modules_are_imported_before_the_children_take_work(
    env: ExecutionEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "heavy_pipeline_probe.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # children get this sys.path; this process never imports it
    probe = dispatch(by_path("imported"), {"module": "heavy_pipeline_probe"})
    plain = LocalExecutor(env, processes=1)
    try:
        plain.submit([probe])
        outcome = run_until(plain, [probe.activity_id])[probe.activity_id]
        assert isinstance(outcome, ActivityFinished) and outcome.result is False
    finally:
        plain.close()
    # a module that cannot be imported is reported on stderr, not fatal: the others still load
    preloading = LocalExecutor(dataclasses.replace(env, preload=("no_such_module_here", "heavy_pipeline_probe")),
                               processes=2)
    try:
        preloading.start()  # returns once every child has imported them
        assert all(child.ready for child in preloading._children)
        probes = [dispatch(by_path("imported"), {"module": "heavy_pipeline_probe"}) for _ in range(4)]
        preloading.submit(probes)
        final = run_until(preloading, [d.activity_id for d in probes])
        assert all(isinstance(o, ActivityFinished) and o.result is True for o in final.values())
    finally:
        preloading.close()


SCRIPT_WITHOUT_MAIN_GUARD = """
import sys, time
from pathlib import Path
sys.path[:0] = {paths!r}
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.local import LocalExecutor
from skyweave.model.messages import ActivityStarted, DispatchActivity
from skyweave.model.specs import TaskSpec

def double(x: int) -> int:
    return 2 * x

root = Path({root!r})
env = ExecutionEnv(worker="w", storage_root=root / "s", work_root=root / "w", log_root=root / "l")
executor = LocalExecutor(env, processes=1)
tasks = {{"by-module": {module_ref!r}, "in-this-script": __file__ + ":double"}}
executor.submit([
    DispatchActivity(activity_id=key, attempt=1, run_id="r", task=TaskSpec(name=key, version="1", ref=ref),
                     arguments={{"x": 21, "y": 21}} if key == "by-module" else {{"x": 21}})
    for key, ref in tasks.items()
])
done = {{}}
end = time.monotonic() + 30
while len(done) < 2 and time.monotonic() < end:
    for o in executor.collect(0.5):
        if not isinstance(o, ActivityStarted):
            done[o.activity_id] = o
executor.close()
for key, o in sorted(done.items()):
    print(key, type(o).__name__, getattr(o, "result", None), getattr(o, "message", "").replace("\\n", " "))
"""


def test_a_script_without_a_main_guard_is_not_run_again_by_the_children(tmp_path: Path) -> None:
    """Children do not re-import the parent's main script; a task file that starts a run when
    imported gets a clear error instead of starting executors inside the children."""
    script = tmp_path / "pipeline.py"
    src = Path(__file__).resolve().parents[3] / "src"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD.format(
        paths=[str(src), str(TASKS_IMPORT_ROOT)],
        root=str(tmp_path / "env"),
        module_ref=by_module("add"),
    ))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "by-module ActivityFinished 42 "
    assert lines[1].startswith("in-this-script ActivityFailed None task file")
    assert "cannot start inside a skyweave worker process" in lines[1]
    assert 'if __name__ == "__main__":' in lines[1]


def test_output_of_a_stopped_or_crashed_activity_reaches_its_log(single: LocalExecutor) -> None:
    stuck = dispatch(by_path("talk_then_hang"), timeout_s=0.5)
    crash = dispatch(by_path("talk_then_exit"))
    single.submit([stuck, crash])
    final = run_until(single, [stuck.activity_id, crash.activity_id])
    for d, said in ((stuck, "about to hang"), (crash, "about to exit")):
        outcome = final[d.activity_id]
        assert isinstance(outcome, ActivityFailed)
        log = LocalStorage.local_path(outcome.log_uri).read_text()
        assert said in log
        assert "fd-level words" in log


def test_a_segfault_is_reported_with_its_python_traceback_in_the_log(single: LocalExecutor) -> None:
    crash = dispatch(by_path("segfault"))
    single.submit([crash])
    outcome = run_until(single, [crash.activity_id])[crash.activity_id]
    assert isinstance(outcome, ActivityFailed)
    assert "killed by signal SIGSEGV" in outcome.message
    log = LocalStorage.local_path(outcome.log_uri).read_text()
    assert "Segmentation fault" in log
    assert "segfault" in log  # the task's frame
