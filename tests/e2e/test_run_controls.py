"""Run controls end to end: ``skyweave controller`` and ``skyweave worker`` as separate processes
(as the docs deploy them), starts counted from a side-effect file the activities append to.

* After ``skyweave pause`` returns, no activity of the run starts until ``skyweave resume`` — not
  even those already on the bus (the dispatch window puts a small run there at once) or taken
  ahead by a worker; the running ones finish.
* A priority-0 activity submitted into a saturating stream of priority-3 work starts within a
  bound set by ``aging_s``: asserted from the order of starts, not from seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from skyweave.client import Client
from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, flat, poll, service_logs, stop

CONTROLS = WORKFLOWS / "controls.py"


def _start(cli: CLI, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(cli_argv(*args, "--store", str(cli.store)), cwd=cli.cwd,
                                env={**cli_env(), **env}, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _starts(log: Path) -> list[str]:
    """``TAG I`` of every start so far, in order."""
    return log.read_text().splitlines() if log.is_file() else []


def _ended(cli: CLI, run_id: str) -> dict[str, object] | None:
    status = cli.status(run_id)
    return status if status["status"] in ("succeeded", "failed", "cancelled") else None


@pytest.mark.slow
def test_no_activity_of_a_paused_run_starts_after_pause_returns(cli: CLI) -> None:
    log, gate = cli.cwd / "starts.log", cli.cwd / "gate"
    procs = [_start(cli, "controller", log=cli.cwd / "controller.log"),
             _start(cli, "worker", "--slots", "2", log=cli.cwd / "worker.log")]
    try:
        run_id = cli.json("submit", f"{CONTROLS}:started_log", "--param", "n=12", "--param", "tag=p",
                          "--param", f"log={log}", "--param", f"gate={gate}")["run_id"]
        poll(lambda: len(_starts(log)) >= 2, deadline=60, what="both slots to run an activity")
        paused = cli("pause", run_id).ok()
        before = _starts(log)
        assert len(before) == 2, "a worker takes ahead only what it can start, unless it is short"
        assert cli.status(run_id)["status"] == "paused"

        gate.touch()  # the two running activities finish; ten of the run are on the bus, held
        # A probe submitted now, of the same priority: the bus hands out the older work first, so
        # once the probe has started, any claimable activity of the paused run would have started.
        probe = cli.json("submit", f"{CONTROLS}:one_logged", "--param", "tag=probe",
                         "--param", f"log={log}")["run_id"]
        final = poll(lambda: _ended(cli, probe), deadline=60, what="the probe run to finish")
        assert final["status"] == "succeeded", service_logs(cli)
        poll(lambda: sum(a["state"] == "succeeded" and a["task"] == "logged"
                         for a in cli.status(run_id)["activities_detail"]) >= 2,
             deadline=60, what="the two running activities to finish")
        assert [s for s in _starts(log) if s.startswith("p ")] == before, "started while paused"
        assert cli.status(run_id)["status"] == "paused"
        assert f"paused {run_id}" in flat(paused.out), paused.out

        cli("resume", run_id).ok()
        done = poll(lambda: _ended(cli, run_id), deadline=60, what="the resumed run to finish")
        assert done["status"] == "succeeded", service_logs(cli)
        started = [s for s in _starts(log) if s.startswith("p ")]
        assert sorted(started) == sorted(f"p {i}" for i in range(12)), "each started once"
    finally:
        for proc in procs:
            stop(proc)


@pytest.mark.slow
def test_low_priority_starts_within_the_aging_bound_under_a_saturating_stream(cli: CLI) -> None:
    """One slot; activities of ``seconds`` each; ``aging_s`` small beside that.  The bus puts the
    priority-0 activity ahead of every priority-3 one enqueued more than ``3 * aging_s`` after it,
    and the test submits two more priority-3 activities per start it sees (more than the worker
    takes: the backlog grows), so at most the ``backlog`` and those submitted within ``3 * aging_s``
    (plus a few for a controller that handles several submissions in one step) may start first.
    Without aging on the bus, the whole stream (2 x ``stream``) starts first."""
    seconds, aging_s, backlog, stream = 0.3, 0.05, 8, 25
    bound = backlog + 2 * (int(3 * aging_s / seconds) + 1) + 4
    log = cli.cwd / "starts.log"
    env = {"SKYWEAVE_AGING_S": str(aging_s)}
    procs = [_start(cli, "controller", log=cli.cwd / "controller.log", **env),
             _start(cli, "worker", "--slots", "1", log=cli.cwd / "worker.log", **env)]
    client = Client(str(cli.store), engine=False, aging_s=aging_s)
    try:
        def high(tag: str) -> None:
            client.submit(f"{CONTROLS}:one_logged", {"tag": tag, "log": str(log), "seconds": seconds}, priority=3)

        client.submit(f"{CONTROLS}:started_log", {"n": backlog + 1, "tag": "h", "log": str(log),
                                                  "seconds": seconds}, priority=3)
        poll(lambda: _starts(log), deadline=60, what="the first priority-3 activity to start", interval=0.02)
        low = client.submit(f"{CONTROLS}:one_logged", {"tag": "low", "log": str(log), "seconds": seconds})
        seen = len(_starts(log))
        for k in range(stream):
            if any(s.startswith("low ") for s in _starts(log)):
                break
            seen = poll(lambda: len(_starts(log)) > seen and len(_starts(log)), deadline=60,  # noqa: B023
                        what="the next start", interval=0.02)
            high(f"s{k}a")
            high(f"s{k}b")
        low.wait(timeout=120)
        order = _starts(log)
        first = order.index("h 0")
        ahead = order[first + 1 : order.index("low 0")]
        assert len(ahead) <= bound, (f"{len(ahead)} priority-3 starts came before the priority-0 one "
                                     f"(bound {bound} with aging_s={aging_s}): {ahead}\n{service_logs(cli)}")
    finally:
        client.close()
        for proc in procs:
            stop(proc)
