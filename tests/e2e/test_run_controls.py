"""Run controls end to end: ``skyweave controller`` and ``skyweave worker`` as separate processes
(as the docs deploy them), starts counted from a side-effect file the activities append to.

* A priority-0 activity submitted into a saturating stream of priority-3 work starts within a
  bound set by ``aging_s``: asserted from the order of starts, not from seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from skyweave.client import Client
from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, poll, service_logs, stop

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
