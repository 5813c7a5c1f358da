"""``skyweave listen``: a private listener in its own process, sharing only the bus URL with the
controller.  It hears each announcement at least once; killed (-9) and started again with the same
group it resumes where the group stopped (the one event in its hands comes again, nothing else);
while it is stuck the controller goes on; another group hears everything, once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, installed_skyweave, poll, stop
from tests.services import service_url

BASIC = WORKFLOWS / "basic.py"
PATTERNS = "activity.succeeded,run.*,product.created"

RECORD = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    event = json.load(sys.stdin)
    line = {"offset": event["offset"], "topic": event["topic"], "run_id": os.environ.get("SKYWEAVE_RUN_ID"),
            "env_topic": os.environ["SKYWEAVE_TOPIC"], "fields": sorted(event["event"])}
    with open(sys.argv[1], "a") as fh:
        fh.write(json.dumps(line) + "\\n")
    while Path(sys.argv[2]).exists():  # held: the listener is stuck in this event
        time.sleep(0.05)
''')


def _listen(home: Path, bus: str, group: str) -> subprocess.Popen[bytes]:
    """``skyweave listen`` run from ``home`` with only the bus URL (no store): it records each event
    in ``home/events.jsonl`` and is held in an event while ``home/hold`` exists."""
    cmd = f"{sys.executable} {home / 'record.py'} {home / 'events.jsonl'} {home / 'hold'}"
    argv = [str(installed_skyweave()), "listen", PATTERNS, "--exec", cmd, "--group", group, "--bus", bus]
    with (home / "listen.log").open("ab") as fh:
        return subprocess.Popen(argv, cwd=home, env=cli_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _listening(log: Path) -> bool:
    return log.is_file() and "listening to" in log.read_text()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def bus(request: pytest.FixtureRequest, cli: CLI) -> Iterator[str]:
    """The controller's bus: the SQLite file of its store, or the test Redis under a prefix of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{cli.store / 'bus.db'}"
        return
    from skyweave.bus.redis import RedisBus

    server, prefix = service_url("redis"), f"test-{uuid.uuid4().hex[:12]}"
    yield f"{server}?prefix={prefix}"
    cleanup = RedisBus(server, prefix=prefix, retry_s=5)
    try:
        cleanup.purge()
    finally:
        cleanup.close()


@pytest.mark.slow
def test_listener_process_resumes_its_group_after_kill_9_and_never_holds_the_controller(cli: CLI, bus: str) -> None:
    homes = {name: cli.cwd / name for name in ("team-a", "team-b")}
    for home in homes.values():
        home.mkdir()
        (home / "record.py").write_text(RECORD)
    out_a, out_b = homes["team-a"] / "events.jsonl", homes["team-b"] / "events.jsonl"
    hold = homes["team-a"] / "hold"
    hold.touch()
    with (cli.cwd / "controller.log").open("wb") as fh:
        controller = subprocess.Popen(cli_argv("controller", "--workers", "2", "--store", str(cli.store),
                                               "--bus", bus),
                                      cwd=cli.cwd, env=cli_env(), stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    procs = [controller]
    try:
        poll(lambda: "controller on store" in (cli.cwd / "controller.log").read_text(), deadline=60,
             what="the controller to start")
        a_log, b_log = homes["team-a"] / "listen.log", homes["team-b"] / "listen.log"
        procs.append(_listen(homes["team-a"], bus, "team-a"))
        procs.append(_listen(homes["team-b"], bus, "team-b"))
        poll(lambda: _listening(a_log) and _listening(b_log), deadline=60, what="both listeners to join")

        submitted = subprocess.run(cli_argv("submit", f"{BASIC}:simple", "--param", "n=3", "--json", "--store",
                                            str(cli.store)), cwd=cli.cwd, env=cli_env() | {"SKYWEAVE_BUS": bus},
                                   capture_output=True, text=True, timeout=120, check=True)
        run_id = json.loads(submitted.stdout)["run_id"]

        def finished() -> dict[str, Any] | None:
            st = cli.status(run_id)
            return st if st["status"] in ("succeeded", "failed") else None

        # team-a is stuck in its first event all along: the run ends regardless
        final = poll(finished, deadline=90, what="the run to finish while team-a is stuck")
        assert final["status"] == "succeeded"
        poll(lambda: any(e["topic"] == "run.succeeded" for e in _lines(out_b)), deadline=60,
             what="team-b to hear run.succeeded")
        stuck = _lines(out_a)
        assert len(stuck) == 1, "team-a is held in its first event"

        os.killpg(procs[1].pid, signal.SIGKILL)
        procs[1].wait(10)
        hold.unlink()
        procs[1] = _listen(homes["team-a"], bus, "team-a")

        heard_b = _lines(out_b)
        want = {e["offset"] for e in heard_b}
        poll(lambda: want <= {e["offset"] for e in _lines(out_a)}, deadline=60,
             what="team-a, restarted, to hear everything team-b heard")
        heard_a = _lines(out_a)
    finally:
        for proc in procs:
            stop(proc)

    topics_b = Counter(e["topic"] for e in heard_b)
    assert topics_b["run.succeeded"] == 1 and topics_b["activity.succeeded"] == final["activities"]
    assert topics_b["product.created"] == final["products"] == 3
    assert all(e["run_id"] == run_id and e["env_topic"] == e["topic"] for e in heard_b)
    assert len(heard_b) == len(want), "the group that was never killed heard each event once"
    offsets_a = [e["offset"] for e in heard_a]
    assert offsets_a[0] == offsets_a[1] == stuck[0]["offset"], \
        "the event in hand at the kill came again, first: the group resumed where it stopped"
    assert offsets_a[1:] == [e["offset"] for e in heard_b], "after that, each event once, in bus order"
    assert "activity_id" in next(e for e in heard_a if e["topic"] == "activity.succeeded")["fields"]
