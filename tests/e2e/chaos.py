"""Crash tests with the controller and workers as separate processes, killed with -9 at random
moments, and a ledger of executions written by the task itself (``workflows/once.py``).

The ledger is the independent witness: skyweave's own records are checked against it, not the
other way round.  ``Chaos.run`` submits one run of ``once.many``, kills as scheduled, waits for
the run to end and returns a ``Verdict`` with the counts the tests assert and report.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from skyweave.store import open_store
from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, poll, stop

ONCE = WORKFLOWS / "once.py"
REPORT_SLACK_S = 0.25
COUNTED = ("counted", "counted_product")
"""The tasks of ``once.py`` that write the ledger."""


@dataclass
class Execution:
    """One execution of an activity, as the task itself wrote it down."""

    activity: str
    attempt: int
    pid: int
    worker_pid: int
    """The ``skyweave worker`` process that ran it (the session it leads)."""
    started: float
    ended: float | None = None


def read_ledger(path: Path) -> dict[str, list[Execution]]:
    """Executions per activity id, in the order they started."""
    runs: dict[str, list[Execution]] = defaultdict(list)
    open_: dict[tuple[str, int, int], Execution] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        what, aid, attempt, pid, sid, at = line.split()
        key = (aid, int(attempt), int(pid))
        if what == "start":
            ex = Execution(aid, int(attempt), int(pid), int(sid), float(at))
            runs[aid].append(ex)
            open_[key] = ex
        else:
            open_[key].ended = float(at)
    return runs


def count_starts(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.startswith(b"start"))


@dataclass
class Kill:
    what: str
    """``controller`` or ``worker``."""
    at: float
    pid: int
    running: set[str] = field(default_factory=set)
    """For a worker: the activities the ledger shows it running when it was killed — started and
    not ended, or ended less than ``REPORT_SLACK_S`` before (the worker may not have reported it
    yet: to skyweave it was still running)."""


@dataclass
class Verdict:
    activities: int
    executions: int
    kills: list[Kill]
    repeated: dict[str, list[Execution]]
    """Activities executed more than once."""
    unexplained: list[str]
    """Repeated executions not explained by the death of the worker that ran the earlier one."""
    unrecorded: list[str]
    """Executions the store has no attempt row for (or records under a shared attempt number)."""
    moved_after_s: list[float]
    """Per re-executed activity: seconds from its worker's death to its next start elsewhere."""
    run_state: str
    states: dict[str, int]
    lost_attempts: int
    """Attempt rows the store closed as ``lost`` (a re-execution's recorded reason)."""

    def summary(self) -> str:
        kc = sum(k.what == "controller" for k in self.kills)
        kw = sum(k.what == "worker" for k in self.kills)
        moved = (f"death -> running elsewhere: median {sorted(self.moved_after_s)[len(self.moved_after_s) // 2]:.2f} s, "
                 f"max {max(self.moved_after_s):.2f} s" if self.moved_after_s else "no work moved")
        return (f"{self.activities} activities, {self.executions} executions "
                f"({len(self.repeated)} executed more than once, {len(self.unexplained)} unexplained), "
                f"kill -9: {kc} controller, {kw} worker; {self.lost_attempts} attempts recorded lost; "
                f"{moved}; run {self.run_state} {self.states}")


class Chaos:
    """A controller and workers as ``skyweave`` processes on one store, and the means to kill them."""

    def __init__(self, cli: CLI, *, heartbeat_s: float = 0.3, worker_timeout_s: float = 1.5,
                 lease_s: float = 60.0, slots: int = 2, store: str | None = None,
                 env: dict[str, str] | None = None, workflow: str = "many") -> None:
        """``store`` (default ``cli.store``) and ``env`` (e.g. ``SKYWEAVE_BUS``, ``SKYWEAVE_STORAGE``)
        are given to every process, the submission included; ``workflow`` is one of ``once.py``."""
        self.cli = cli
        self.store = store or str(cli.store)
        self.workflow = workflow
        self.env = {**cli_env(), "SKYWEAVE_HEARTBEAT_S": str(heartbeat_s),
                    "SKYWEAVE_WORKER_TIMEOUT_S": str(worker_timeout_s), "SKYWEAVE_LEASE_S": str(lease_s),
                    **(env or {})}
        self.slots = slots
        self.ledger = cli.cwd / "ledger.txt"
        self.controller: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.kills: list[Kill] = []
        self.log_of: dict[int, Path] = {}
        self._logs = 0

    # -- processes ------------------------------------------------------------------------------
    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        self._logs += 1
        log = self.cli.cwd / f"{self._logs:02d}-{args[0]}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(cli_argv(*args, "--store", self.store), cwd=self.cli.cwd,
                                    env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_of[proc.pid] = log
        return proc

    def wait_until_serving(self, proc: subprocess.Popen[bytes]) -> None:
        """Until a worker says it has started (its first heartbeat is out)."""
        poll(lambda: "slots" in self.log_of[proc.pid].read_text(errors="replace"), deadline=60,
             what=f"worker {proc.pid} to start", interval=0.05)

    def start_controller(self) -> None:
        self.controller = self._start("controller")

    def start_worker(self, slots: int | None = None) -> subprocess.Popen[bytes]:
        proc = self._start("worker", "--slots", str(slots or self.slots))
        self.workers.append(proc)
        return proc

    def lease_holder_pid(self) -> int | None:
        """The pid of the controller holding the store's lease (``None`` if none holds it now)."""
        store = open_store(self.store)
        try:
            holder = store.controller_lease_holder()
        finally:
            store.close()
        if holder is None or holder[1] < time.time():
            return None
        return int(holder[0].split("-")[-2])

    def lease_expiry(self) -> float | None:
        """When the store's controller lease expires unless renewed (``None``: nobody holds it)."""
        store = open_store(self.store)
        try:
            holder = store.controller_lease_holder()
        finally:
            store.close()
        return None if holder is None else holder[1]

    def kill_controller(self) -> None:
        assert self.controller is not None
        self.kills.append(Kill("controller", time.time(), self.controller.pid))
        _kill9(self.controller)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> Kill:
        at = time.time()
        _kill9(proc)
        running = {aid for aid, exs in read_ledger(self.ledger).items()
                   if any(e.worker_pid == proc.pid and (e.ended is None or e.ended > at - REPORT_SLACK_S)
                          for e in exs)}
        kill = Kill("worker", at, proc.pid, running)
        self.kills.append(kill)
        self.workers.remove(proc)
        return kill

    def kill_busy_worker(self) -> Kill:
        """kill -9 of a worker at a moment the ledger shows it running an activity."""
        def busy() -> subprocess.Popen[bytes] | None:
            pids = {p.pid: p for p in self.workers}
            for exs in read_ledger(self.ledger).values():
                if exs[-1].ended is None and exs[-1].worker_pid in pids:
                    return pids[exs[-1].worker_pid]
            return None
        return self.kill_worker(poll(busy, deadline=60, what="a worker running something", interval=0.01))

    def close(self) -> None:
        for proc in [self.controller, *self.workers]:
            if proc is not None:
                stop(proc)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.cli.cwd.glob("*-*.log")))

    # -- a run ------------------------------------------------------------------------------------
    def submit(self, n: int, seconds: float, *, gate: str = "", gated: int = 0) -> str:
        extra = ["--param", f"gate={gate}", "--param", f"gated={gated}"] if gated else []
        argv = cli_argv("submit", f"{ONCE}:{self.workflow}", "--param", f"n={n}", "--param",
                        f"seconds={seconds}", "--param", f"ledger={self.ledger}", *extra, "--json",
                        "--store", self.store)
        proc = subprocess.run(argv, cwd=self.cli.cwd, env=self.env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        run_id: str = json.loads(proc.stdout)["run_id"]
        return run_id

    def wait_for_starts(self, count: int, deadline: float = 120.0) -> None:
        poll(lambda: count_starts(self.ledger) >= count, deadline=deadline, interval=0.01,
             what=f"{count} executions to start")

    def wait_for_end(self, run_id: str, deadline: float = 180.0) -> str:
        store = open_store(self.store)
        try:
            def ended() -> str | None:
                state = store.get_run(run_id).state
                return state if state in ("succeeded", "failed", "cancelled") else None
            return poll(ended, deadline=deadline, what="the run to end", interval=0.1)
        finally:
            store.close()

    def run(self, n: int, seconds: float, schedule: list[str], *, seed: int, workers: int = 2,
            outage_s: tuple[float, float] = (2.0, 3.0)) -> Verdict:
        """Run ``n`` activities; ``schedule`` lists ``controller``, ``worker`` or ``both`` kills,
        made at random points of the run (seeded); a killed controller is restarted after
        ``outage_s``, a killed worker at once (the others take its work).  ``both``: a worker, then
        at once the controller (the worker is found dead by the restarted controller)."""
        rng = random.Random(seed)
        self.start_controller()
        for _ in range(workers):
            self.start_worker()
        run_id = self.submit(n, seconds)
        points = sorted(int(rng.uniform(0.05, 0.9) * n) for _ in schedule)
        for what, point in zip(schedule, points, strict=True):
            self.wait_for_starts(point)
            if what in ("worker", "both"):
                self.kill_worker(rng.choice(self.workers))
                self.start_worker()
            if what in ("controller", "both"):
                self.kill_controller()
                time.sleep(rng.uniform(*outage_s))  # the outage itself: workers go on meanwhile
                self.start_controller()
        state = self.wait_for_end(run_id)
        return self.verdict(run_id, state)

    def verdict(self, run_id: str, state: str) -> Verdict:
        executions = read_ledger(self.ledger)
        killed = {k.pid: k for k in self.kills if k.what == "worker"}
        repeated = {aid: exs for aid, exs in executions.items() if len(exs) > 1}
        unexplained: list[str] = []
        moved: list[float] = []
        for aid, exs in repeated.items():
            for before, after in itertools.pairwise(exs):
                kill = killed.get(before.worker_pid)
                if kill is None or aid not in kill.running:
                    unexplained.append(f"{aid}: attempt {before.attempt} by worker {before.worker_pid} "
                                       f"(ended={before.ended is not None}) ran again as attempt {after.attempt}")
                else:
                    moved.append(after.started - kill.at)
        store = open_store(self.store)
        try:
            acts = [a for a in store.list_activities(run_id=run_id, limit=1_000_000) if a.task_name in COUNTED]
            states: dict[str, int] = defaultdict(int)
            for a in acts:
                states[a.state] += 1
            unrecorded: list[str] = []
            lost = 0
            for a in acts:
                rows = {r.attempt: r for r in store.list_attempts(a.id)}
                lost += sum(r.state == "lost" for r in rows.values())
                exs = executions.get(a.id, [])
                numbers = [e.attempt for e in exs]
                if len(set(numbers)) != len(numbers):
                    unrecorded.append(f"{a.id}: executions share attempt numbers {numbers}")
                unrecorded.extend(f"{a.id}: execution as attempt {n} has no attempt row"
                                  for n in numbers if n not in rows)
        finally:
            store.close()
        return Verdict(activities=len(acts), executions=sum(len(v) for v in executions.values()),
                       kills=list(self.kills), repeated=repeated, unexplained=unexplained,
                       unrecorded=unrecorded, moved_after_s=moved, run_state=state, states=dict(states),
                       lost_attempts=lost)


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 of the process and its children (an executor's child processes die with it)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
