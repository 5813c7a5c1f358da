"""The CLI tells users what happened and what to type next: the version that really runs, the
workflow they probably meant, and ``skyweave resume`` when nothing else will finish their work."""

from __future__ import annotations

import os
import signal
import textwrap

from .helpers import CLI, WORKFLOWS, flat, poll, stop

BASIC = WORKFLOWS / "basic.py"

LABEL_V2 = textwrap.dedent('''
    from skyweave import task

    @task(version="2")
    def add_up(values: list[int]) -> int:
        return -1
''')


def test_submitting_a_file_whose_version_will_not_run_names_both_versions(cli: CLI) -> None:
    cli("run", f"{BASIC}:simple", "--param", "n=1").ok()
    (cli.cwd / "v2.py").write_text(LABEL_V2)
    cli("tasks", "register", "v2.py:add_up").ok()
    res = cli("run", f"{BASIC}:simple", "--param", "n=1", "--json").ok()
    assert res.json()["status"] == "succeeded"
    text = flat(res.err)
    assert text.startswith("warning: task 'add_up': the submitted workflow defines version '1'"), res.err
    assert "but this run uses version '2'" in text and "v2.py:add_up" in text
    assert f"`skyweave tasks register {BASIC}:add_up`" in text
    assert "Warning" not in res.err                     # a warning line, not Python's file:line format


def test_a_misspelt_workflow_name_gets_a_suggestion(cli: CLI) -> None:
    res = cli("run", f"{BASIC}:simpel")
    assert res.code != 0 and "Traceback" not in res.err
    assert "has no 'simpel'; did you mean 'simple'?" in flat(res.err)


def test_retry_without_a_controller_says_to_run_resume(cli: CLI) -> None:
    run_id = cli("run", f"{BASIC}:failing", "--json").json()["run_id"]
    act = cli.status(run_id)["activities_detail"][0]["id"]
    res = cli("retry", act).ok()
    assert "no controller is running on this store" in flat(res.err)
    assert "run `skyweave resume` to apply it now" in flat(res.err)


def test_an_interrupted_run_says_to_run_resume_and_resume_finishes_it(cli: CLI) -> None:
    gate = cli.cwd / "gate"
    log = cli.cwd / "run.log"
    proc = cli.popen("run", f"{BASIC}:gated_fanout", "--param", "n=3", "--param", "free=1",
                     "--param", f"gate={gate}", "--workers", "1", log=log)
    try:
        run_id = poll(lambda: cli.json("runs"), deadline=60, what="the run to be submitted")[0]["run_id"]
        poll(lambda: any(a["state"] == "succeeded" and a["task"] == "gated"
                         for a in cli.status(run_id)["activities_detail"]),
             deadline=60, what="the ungated activity to succeed")
        os.kill(proc.pid, signal.SIGINT)                 # Ctrl-C: the interrupt goes to `skyweave run`
        proc.wait(60)
    finally:
        stop(proc)
    out = flat(log.read_text())
    assert proc.returncode == 130, out
    assert f"error: interrupted: run {run_id} is kept in the store, unfinished" in out
    assert "hint: run `skyweave resume` to finish it" in out
    assert "Traceback" not in out
    gate.write_text("open\n")
    cli("resume", timeout=120).ok()
    assert cli.status(run_id)["status"] == "succeeded"
