"""SlurmExecutor specifics, against a fake Slurm (the contract suite runs it on a real one): what
it asks ``sbatch`` for, ONE ``squeue`` per poll whatever the number of jobs, a job ``squeue`` no
longer lists resolved by its outcome file (never assumed done), Slurm's own kills reported with
Slurm's state and reason, and the options parsed from the executor setting."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from skyweave.errors import SkyweaveError
from skyweave.executors import open_executor
from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.job import decode_job, encode_outcome, write_atomically
from skyweave.executors.slurm import SlurmExecutor
from skyweave.executors.slurm_commands import JobState, SlurmError, SlurmOptions, parse_options, parse_squeue
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityStarted, DispatchActivity
from skyweave.model.specs import Resources, TaskSpec
from tests.unit.executors.helpers import by_path, dispatch


class FakeSlurm:
    """Records what the executor asks; ``states`` is what ``squeue`` answers (``None``: it fails)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, list[str]]] = []
        self.states: dict[str, JobState] | None = {}
        self.squeue_calls = 0
        self.user_jobs_calls = 0
        self.user_jobs_down = False
        self.cancelled: list[str] = []
        self.refuse: SlurmError | None = None

    def sbatch(self, script: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        if self.refuse is not None:
            raise self.refuse
        self.submitted.append((script, list(args)))
        job_id = str(100 + len(self.submitted))
        count = next((int(a.rpartition("-")[2]) + 1 for a in args if a.startswith("--array=")), 0)
        name = next(a.partition("=")[2] for a in args if a.startswith("--job-name="))
        for i in range(count) if count else [None]:
            self.states[f"{job_id}_{i}" if i is not None else job_id] = JobState(  # type: ignore[index]
                "PENDING", name=name, script=script)
        return job_id

    def squeue(self, name: str) -> dict[str, JobState] | None:
        self.squeue_calls += 1
        return None if self.states is None else dict(self.states)

    def scancel(self, job_ids: Sequence[str]) -> None:
        self.cancelled += job_ids

    def user_jobs(self) -> dict[str, JobState] | None:
        self.user_jobs_calls += 1
        return None if self.states is None or self.user_jobs_down else dict(self.states)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(env: ExecutionEnv, fake: FakeSlurm, clock: Clock, **options: object) -> SlurmExecutor:
    executor = SlurmExecutor(env, SlurmOptions(**{"poll_s": 1.0, "lost_after_s": 30.0, **options}),  # type: ignore[arg-type]
                             max_jobs=50, slurm=fake, clock=clock)
    executor.start()
    return executor


def job_files(executor: SlurmExecutor) -> dict[str, Path]:
    """Activity id -> its job file's stem (where the job writes its outcome)."""
    stems = {}
    for path in executor.dir.glob("*.job.json"):
        d, _ = decode_job(path.read_bytes())
        stems[d.activity_id] = path.with_name(path.name.removesuffix(".job.json"))
    return stems


def write_outcome(stem: Path, d: DispatchActivity, result: object) -> None:
    write_atomically(stem.with_name(stem.name + ".outcome.json"), encode_outcome(
        ActivityFinished(activity_id=d.activity_id, attempt=d.attempt, worker="wrk-test", result=result)))


def finals(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.activity_id: o for o in outcomes if not isinstance(o, ActivityStarted)}


def test_one_task_handed_over_together_is_one_job_array_with_its_resources(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock, partition="gpu", account="astro")
    spec = TaskSpec(name="image", version="1", ref=by_path("add"), timeout_s=90.0,
                    resources=Resources(cpus=1.5, memory_mb=300, gpus=1, partition="imaging"))
    fan_out = [DispatchActivity(activity_id=f"act-img{i}", attempt=1, run_id="run-1", task=spec,
                                arguments={"x": i, "y": 1}) for i in range(4)]
    other = dispatch(by_path("add"), {"x": 1, "y": 2})
    executor.submit([*fan_out, other])
    assert len(fake.submitted) == 2  # one sbatch for the fan-out, one for the other task
    (script, args), (_, single) = fake.submitted
    assert "--array=0-3" in args
    for wanted in ("--no-requeue", "--cpus-per-task=2", "--mem=300M", "--gres=gpu:1", "--time=3", "--partition=imaging",
                   "--account=astro", f"--job-name={executor.job_name}"):
        assert wanted in args
    assert not [a for a in single if a.startswith(("--array", "--mem", "--gres", "--time"))]
    assert "--partition=gpu" in single  # the option's partition for a task that names none
    assert "--partition=gpu" not in args  # the task's own wins
    assert "skyweave.execute" in Path(script).read_text() and "SLURM_ARRAY_TASK_ID" in Path(script).read_text()
    assert set(job_files(executor)) == {d.activity_id for d in (*fan_out, other)}
    executor.close()
    assert sorted(fake.cancelled) == ["101_0", "101_1", "101_2", "101_3", "102"]


def test_one_squeue_per_poll_for_all_jobs(env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    executor.submit([dispatch(by_path("add"), {"x": i, "y": 0}, name=f"t{i % 7}") for i in range(40)])
    for _ in range(5):  # five polls apart, each collect looking at the files many times
        clock.now += 1.0
        for _ in range(3):
            executor.collect(0.0)
    assert fake.squeue_calls == 5
    assert len(fake.submitted) == 7


def test_a_job_squeue_forgot_is_unknown_until_its_outcome_file_says(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    d = dispatch(by_path("add"), {"x": 1, "y": 2})
    executor.submit([d])
    executor.collect(0.0)
    fake.states = {}  # squeue no longer lists it (ended, and past MinJobAge)
    for _ in range(10):  # polls for 10 s: not assumed done, not lost yet
        clock.now += 1.0
        assert finals(executor.collect(0.0)) == {}
    assert executor.active == 1
    write_outcome(job_files(executor)[d.activity_id], d, 3)
    outcome = finals(executor.collect(0.0))[d.activity_id]
    assert isinstance(outcome, ActivityFinished) and outcome.result == 3
    assert executor.active == 0 and list(executor.dir.iterdir()) == []  # job, script and outcome removed


def test_a_job_gone_without_an_outcome_is_lost_after_lost_after_s(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    d = dispatch(by_path("add"), {"x": 1, "y": 2})
    executor.submit([d])
    fake.states = {"101": JobState("FAILED", node="sw1")}  # ended by itself, no outcome written
    executor.collect(0.0)
    clock.now += 29.0
    assert finals(executor.collect(0.0)) == {}
    clock.now += 2.0
    lost = finals(executor.collect(0.0))[d.activity_id]
    assert isinstance(lost, ActivityFailed)
    assert (lost.error_type, lost.retryable) == ("skyweave.WorkerDied", True)
    assert "Slurm job 101 (task 'add') ended (FAILED) and wrote no outcome within 30 s" in lost.message


def test_a_failed_squeue_concludes_nothing(env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    d = dispatch(by_path("add"), {"x": 1, "y": 2})
    executor.submit([d])
    fake.states = None
    for _ in range(100):
        clock.now += 1.0
        assert finals(executor.collect(0.0)) == {}
    assert executor.active == 1


@pytest.mark.parametrize("case", [
    (JobState("TIMEOUT", "TimeLimit", "sw1", "1:00"), "skyweave.SlurmTimeLimit", True,
     "on sw1 reached its Slurm time limit of 1:00 (state TIMEOUT, reason TimeLimit)"),
    (JobState("NODE_FAIL", "NodeDown", "sw2"), "skyweave.SlurmNodeFailure", True,
     "on sw2 was lost with its node (state NODE_FAIL, reason NodeDown)"),
    (JobState("OUT_OF_MEMORY", "", "sw1"), "skyweave.MemoryLimit", False,
     "went over its memory limit (--mem) (state OUT_OF_MEMORY)"),
    (JobState("CANCELLED", "", "sw1"), "skyweave.SlurmCancelled", False, "was cancelled outside skyweave"),
])
def test_slurms_own_kills_are_reported_with_its_state_and_reason(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock, case: tuple[JobState, str, bool, str]) -> None:
    state, error_type, retryable, said = case
    executor = make(env, fake, clock)
    d = dispatch(by_path("add"), {"x": 1, "y": 2}, attempt=2)
    executor.submit([d])
    fake.states = {"101": state}
    outcome = finals(executor.collect(0.0))[d.activity_id]
    assert isinstance(outcome, ActivityFailed)
    assert (outcome.error_type, outcome.retryable, outcome.attempt) == (error_type, retryable, 2)
    assert said in outcome.message and "Slurm job 101 (task 'add')" in outcome.message


def test_an_outcome_written_before_slurm_killed_the_job_wins(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    d = dispatch(by_path("add"), {"x": 1, "y": 2})
    executor.submit([d])
    write_outcome(job_files(executor)[d.activity_id], d, 3)
    fake.states = {"101": JobState("TIMEOUT", "TimeLimit")}
    outcome = finals(executor.collect(0.0))[d.activity_id]
    assert isinstance(outcome, ActivityFinished) and outcome.result == 3


def test_a_refused_submission_fails_its_activities_with_sbatchs_words(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    fake.refuse = SlurmError("sbatch refused the job: error: invalid partition specified: nope")
    batch = [dispatch(by_path("add"), {"x": i, "y": 0}) for i in range(3)]
    executor.submit(batch)
    final = finals(executor.collect(0.0))
    assert set(final) == {d.activity_id for d in batch}
    for outcome in final.values():
        assert isinstance(outcome, ActivityFailed) and outcome.error_type == "skyweave.SlurmSubmitError"
        assert "invalid partition specified: nope" in outcome.message and outcome.retryable is False
    assert executor.active == 0 and list(executor.dir.iterdir()) == []


def test_the_timeout_counts_from_the_start_mark_and_cancels_the_job(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    executor = make(env, fake, clock)
    d = dispatch(by_path("add"), {"x": 1, "y": 2}, timeout_s=5.0)
    executor.submit([d])
    clock.now += 60.0  # pending for a minute: its timeout has not begun
    assert finals(executor.collect(0.0)) == {}
    stem = job_files(executor)[d.activity_id]
    write_atomically(stem.with_name(stem.name + ".started"), repr(time.time()).encode())
    assert [type(o) for o in executor.collect(0.0)] == [ActivityStarted]
    clock.now += 6.0
    outcome = finals(executor.collect(0.0))[d.activity_id]
    assert isinstance(outcome, ActivityFailed) and outcome.error_type == "skyweave.TaskTimeout"
    assert fake.cancelled == ["101"]


def test_options_come_from_the_executor_setting(env: ExecutionEnv) -> None:
    assert parse_options("slurm") == SlurmOptions()
    options = parse_options("slurm://?partition=debug&account=astro&time_limit=30&poll_s=0.5&array=no"
                            "&job_dir=/shared/jobs&max_jobs=500")
    assert options == SlurmOptions(partition="debug", account="astro", time_limit=30, poll_s=0.5, array=False,
                                   job_dir="/shared/jobs", max_jobs=500)
    executor = open_executor("slurm://?max_jobs=500&job_dir=" + str(env.work_root / "shared"), env, slots=4)
    assert isinstance(executor, SlurmExecutor) and executor.slots == 500
    assert executor.dir.parent == env.work_root / "shared"
    with pytest.raises(SkyweaveError, match="unknown Slurm option 'partiton'") as err:
        parse_options("slurm://?partiton=debug")
    assert "partition" in str(err.value.hint)
    with pytest.raises(SkyweaveError, match="time_limit='ten' is not a valid int"):
        parse_options("slurm://?time_limit=ten")
    with pytest.raises(SkyweaveError, match="takes options, not a host"):
        parse_options("slurm://cluster.example.org")


def test_squeue_lines_are_read_per_job_and_array_element() -> None:
    text = "101_0|RUNNING|None|sw1|1:00\n101_1|PENDING|Resources||1:00\n102|TIMEOUT|TimeLimit|sw1|1:00\n"
    assert parse_squeue(text) == {
        "101_0": JobState("RUNNING", "", "sw1", "1:00"),
        "101_1": JobState("PENDING", "Resources", "", "1:00"),
        "102": JobState("TIMEOUT", "TimeLimit", "sw1", "1:00"),
    }


def test_a_big_fan_out_is_submitted_a_slice_per_call_so_the_worker_keeps_beating(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    """The worker submits and collects from the loop that sends its heartbeats: 600 activities
    handed over at once go out 256 per call (arrays of 256, 256, 88), not all in one stall."""
    executor = SlurmExecutor(env, SlurmOptions(), max_jobs=1000, slurm=fake, clock=clock)
    executor.start()
    executor.submit([dispatch(by_path("add"), {"x": i, "y": 0}) for i in range(600)])
    assert [a for _, args in fake.submitted for a in args if a.startswith("--array")] == ["--array=0-255"]
    executor.collect(0.0)
    executor.collect(0.0)
    arrays = [a for _, args in fake.submitted for a in args if a.startswith("--array")]
    assert arrays == ["--array=0-255", "--array=0-255", "--array=0-87"]
    assert executor.active == 600


def test_the_next_attempt_cancels_the_job_a_dead_worker_left_running(
        env: ExecutionEnv, fake: FakeSlurm, clock: Clock) -> None:
    """The worker that submitted attempt 1 died (its executor is simply dropped here); another
    worker's dispatch of attempt 2 finds that job by its script's activity lines and cancels it,
    and only it: the other element of the same array belongs to an activity still in good hands."""
    dead = make(env, fake, clock)
    spec = TaskSpec(name="image", version="1", ref=by_path("add"))
    first = [DispatchActivity(activity_id=f"act-img{i}", attempt=1, run_id="run-1", task=spec,
                              arguments={"x": i, "y": 1}) for i in range(2)]
    dead.submit(first)
    (array,) = {job_id.partition("_")[0] for job_id in fake.states or {}}
    assert fake.states is not None
    fake.states[f"{array}_1"] = dataclasses.replace(fake.states[f"{array}_1"], state="RUNNING")
    other = make(env, fake, clock)
    other.submit([first[0]])  # an attempt 1 does not look
    assert (fake.user_jobs_calls, fake.cancelled) == (0, [])
    other.submit([DispatchActivity(activity_id="act-img1", attempt=2, run_id="run-1", task=spec,
                                   arguments={"x": 1, "y": 1})])
    assert (fake.user_jobs_calls, fake.cancelled) == (1, [f"{array}_1"])
    fake.user_jobs_down = True  # squeue fails: nothing is cancelled, and the attempt is still submitted
    submitted = len(fake.submitted)
    make(env, fake, clock).submit([DispatchActivity(activity_id="act-img0", attempt=3, run_id="run-1",
                                                    task=spec, arguments={"x": 0, "y": 1})])
    assert fake.cancelled == [f"{array}_1"] and len(fake.submitted) == submitted + 1
