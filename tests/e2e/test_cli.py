"""End-to-end tests of the ``skyweave`` command line, run as real subprocesses on a fresh store.

Each test points ``--store`` at its own ``tmp_path``; the workflows live in ``workflows/``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from skyweave.client import Client

from .helpers import CLI, WORKFLOWS, flat, poll, service_logs, services, stop

BASIC = WORKFLOWS / "basic.py"
PARKING = WORKFLOWS / "parking.py"
TERMINAL = {"succeeded", "failed", "cancelled"}


def by_task(detail: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    return [a for a in detail if a["task"] == task]


def assert_clean_error(res: Any, *fragments: str) -> str:
    """Non-zero exit, exactly one ``error:`` message naming the problem, no Python traceback."""
    assert res.code != 0, f"expected failure from {res.argv}\n{res.out}\n{res.err}"
    text = flat(res.err)
    assert "Traceback" not in res.err + res.out, res.err
    assert res.err.count("error:") == 1, res.err
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in stderr:\n{res.err}"
    return text


# -- 1. the happy path and the inspection commands ---------------------------------------------
def test_run_and_inspect(cli: CLI) -> None:
    res = cli("run", f"{BASIC}:simple", "--param", "n=3", "--param", "obs_id=obs42", "--json").ok()
    summary = res.json()
    run_id = summary["run_id"]
    assert run_id.startswith("run-")
    assert summary["status"] == "succeeded"
    # numbers x2, shout x3, write_product x3, add_up x1
    assert summary["activities"] == 9
    assert summary["by_state"] == {"succeeded": 9}
    assert summary["products"] == 3
    assert summary["params"] == {"n": 3, "obs_id": "obs42"}

    status = cli.status(run_id)
    assert status["run_id"] == run_id and status["status"] == "succeeded"
    detail = status["activities_detail"]
    assert len(detail) == 9 and {a["state"] for a in detail} == {"succeeded"}
    assert sorted(a["key"] for a in by_task(detail, "shout")) == ["0", "1", "2"]

    runs = cli.json("runs")
    assert [(r["run_id"], r["workflow"], r["status"]) for r in runs] == [(run_id, "simple", "succeeded")]

    products = cli.json("products", "list", "--run", run_id)
    assert len(products) == 3
    assert {p["type"] for p in products} == {"e2e.item"}
    assert {p["obs_id"] for p in products} == {"obs42"}
    assert {p["run_id"] for p in products} == {run_id}
    assert sorted(p["name"] for p in products) == ["item0.txt", "item1.txt", "item2.txt"]
    for p in products:  # the catalogue points at real files with the recorded checksum
        path = Path(unquote(urlparse(p["uri"]).path))
        data = path.read_bytes()
        assert data == f"item {p['name'][4]}\n".encode()
        assert p["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert p["size"] == len(data)

    shout1 = next(a for a in by_task(detail, "shout") if a["key"] == "1")
    logs = cli("logs", shout1["id"]).ok()
    assert "hello from shout 1" in logs.out
    assert "hello from shout 0" not in logs.out  # each activity has its own log

    tasks = cli.json("tasks", "list")
    names = {t["name"]: t for t in tasks}
    assert {"numbers", "shout", "write_product", "add_up"} <= set(names)
    assert all(names[n]["current"] and names[n]["version"] == "1" and names[n]["kind"] == "python"
               for n in ("numbers", "shout", "write_product", "add_up"))


# -- 2. a task that raises ----------------------------------------------------------------------
def test_run_with_an_executor_chosen_by_name_a_process_per_activity(cli: CLI) -> None:
    """``--executor subprocess``: every activity in a ``python -m skyweave.execute`` process of its own."""
    summary = cli("run", f"{BASIC}:simple", "--param", "n=2", "--executor", "subprocess", "--json").ok().json()
    assert (summary["status"], summary["activities"], summary["products"]) == ("succeeded", 7, 2)
    jobs = [p for p in Path(cli.store).rglob(".jobs") if p.is_dir()]
    assert len(jobs) == 1 and not list(jobs[0].iterdir())  # its job files, each removed once read


def test_failing_task(cli: CLI) -> None:
    res = cli("run", f"{BASIC}:failing", "--json")
    assert res.code != 0
    summary = res.json()
    assert summary["status"] == "failed"
    assert summary["by_state"] == {"failed": 1}
    assert "Traceback" not in res.err

    res = cli("run", f"{BASIC}:failing", "--param", "x=9")
    assert res.code != 0
    text = flat(res.err)
    assert "boom-9: the detector is on fire" in text
    assert "explode" in text
    assert "Traceback" not in res.err

    failed = cli.json("runs", "--state", "failed")
    assert len(failed) == 2
    status = cli.status(failed[0]["run_id"])
    assert status["status"] == "failed" and status["params"] == {"x": 9}
    (act,) = status["activities_detail"]
    assert act["state"] == "failed"
    logs = cli("logs", act["id"]).ok()
    assert "ValueError: boom-9: the detector is on fire" in logs.out


# -- 3. bad input: one clear message, no traceback -----------------------------------------------
def test_missing_workflow_file(cli: CLI) -> None:
    res = cli("run", "does_not_exist.py:wf")
    assert_clean_error(res, "does_not_exist.py", "does not exist")


@pytest.mark.parametrize(("source", "fragments"), [
    ("from skyweave import workflow\n\nx = 1\ndef f(:\n    pass\n", ["SyntaxError", "line 4"]),
    ("from skyweave import workflow\n\nx = 1\nundefined_name + 1\n", ["NameError", "undefined_name", ":4"]),
], ids=["syntax-error", "name-error"])
def test_workflow_file_that_fails_to_import(cli: CLI, source: str, fragments: list[str]) -> None:
    (cli.cwd / "broken.py").write_text(source)
    res = cli("run", "broken.py:wf")
    text = assert_clean_error(res, "broken.py", *fragments)
    assert str(cli.cwd / "broken.py") in text


def test_name_not_in_file(cli: CLI) -> None:
    res = cli("run", f"{BASIC}:nothere")
    text = assert_clean_error(res, "'nothere'", "basic.py")
    assert "simple" in text  # the hint lists what the file does define


@pytest.mark.parametrize(("params", "fragments"), [
    (["--param", "bogus=1"], ["no parameter 'bogus'", "n, obs_id"]),
    (["--param", "n=abc"], ["'n'", "expects int", "'abc'"]),
    (["--param", "n"], ["--param 'n' is not KEY=VALUE"]),
], ids=["unknown", "wrong-type", "no-equals"])
def test_bad_params(cli: CLI, params: list[str], fragments: list[str]) -> None:
    res = cli("run", f"{BASIC}:simple", *params)
    assert_clean_error(res, *fragments)
    with Client(str(cli.store), engine=False) as client:
        assert client.store.list_runs() == []  # nothing half-submitted


def test_command_task_exit_code(cli: CLI) -> None:
    res = cli("run", f"{BASIC}:command_fails", "--json")
    assert res.code != 0
    assert "Traceback" not in res.err
    run_id = res.json()["run_id"]
    status = cli.status(run_id)
    assert status["status"] == "failed"
    (act,) = status["activities_detail"]
    assert act["task"] == "exit_three" and act["state"] == "failed"
    logs = flat(cli("logs", act["id"]).ok().out)
    assert "exited with code 3" in logs
    assert "going down" in logs  # the command's stderr is kept
    with Client(str(cli.store), engine=False) as client:
        record = client.store.get_activity(act["id"])
    assert record.exit_code == 3
    assert record.error is not None and record.error["type"] == "skyweave.CommandFailed"


def test_a_command_task_records_what_ran_and_its_exit_code_zero(cli: CLI) -> None:
    run_id = cli("run", f"{BASIC}:command_ok", "--json").ok().json()["run_id"]
    (act,) = cli.status(run_id)["activities_detail"]
    assert act["state"] == "succeeded" and act["exit_code"] == 0
    work = f"{cli.store}/work/{act['id']}-1"
    ran = shlex.split(act["command"])
    assert ran == ["sh", "-c", 'printf "%s\\n" "{$1}" | wc -c > "$2"', "sh", "sky weave",
                   f"{Path(work).resolve()}/count.txt"]
    assert f"command: {act['command']} (exit code 0)" in cli("logs", act["id"]).ok().out
    with Client(str(cli.store), engine=False) as client:
        (product,) = client.store.find_products(run_id=run_id)
        assert product.local_path.read_text().strip() == "12"       # "{sky weave}" and a newline
    prov = cli("prov", "export", run_id, "--format", "provjson").ok().json()
    (activity,) = [a for a in prov["activity"].values() if a.get("sw:task") == "count_words"]
    assert activity["sw:exitCode"] == {"$": "0", "type": "xsd:int"}   # 0 is recorded, not dropped
    assert activity["sw:commandLine"] == act["command"]


def test_corrupt_store_is_refused_and_left_alone(cli: CLI) -> None:
    garbage = cli.cwd / "garbage.db"
    payload = bytes(range(256)) * 4 + b"not sqlite at all"
    garbage.write_bytes(payload)
    before = sorted(p.name for p in cli.cwd.iterdir())
    for args in (["run", f"{BASIC}:simple"], ["status", "run-x"]):
        res = CLI(cli.cwd, garbage)(*args)
        assert_clean_error(res, "garbage.db", "not a skyweave store")
    assert garbage.read_bytes() == payload
    assert sorted(p.name for p in cli.cwd.iterdir()) == before  # no -wal/-journal/-shm left behind


def test_unknown_ids_and_paths(cli: CLI) -> None:
    res = cli("status", "run-doesnotexist", "--json")
    assert_clean_error(res, "run-doesnotexist")
    assert res.out == ""
    res = cli("logs", "act-doesnotexist")
    assert_clean_error(res, "act-doesnotexist")
    res = cli("products", "add", "no_such_file.fits", "--type", "e2e.aux.attitude")
    assert_clean_error(res, "no_such_file.fits")


def test_workflow_body_that_raises(cli: CLI) -> None:
    """Regression (fixed in eb7169c): an exception in the workflow body was a bare traceback."""
    res = cli("run", f"{BASIC}:body_raises")
    assert_clean_error(res, "body_raises", "ValueError", "workflow body exploded", "basic.py")


def test_store_given_as_a_db_file(cli: CLI) -> None:
    """Regression (fixed in eb7169c): ``--store x.db`` put code/, products/, bus.db *under* the file."""
    db = CLI(cli.cwd, cli.cwd / "mystore.db")
    res = db("run", f"{BASIC}:simple", "--json")
    assert "Traceback" not in res.err
    run_id = res.ok().json()["run_id"]
    assert [r["run_id"] for r in db.json("runs")] == [run_id]
    assert db.status(run_id)["status"] == "succeeded"
    assert (cli.cwd / "mystore.db").is_file()


def test_store_below_a_file(cli: CLI) -> None:
    """Regression (fixed in eb7169c): a store path below a file raised NotADirectoryError."""
    (cli.cwd / "afile").write_text("just a file\n")
    res = CLI(cli.cwd, cli.cwd / "afile" / "store")("runs")
    assert_clean_error(res, "afile")


def test_retry_then_resume_without_controller(cli: CLI) -> None:
    """Regression (fixed in eb7169c): `resume` ignored a `retry` request waiting on the bus."""
    flag = cli.cwd / "flag.txt"
    res = cli("run", f"{BASIC}:flagged", "--param", f"path={flag}", "--json")
    assert res.code != 0
    run_id = res.json()["run_id"]
    with Client(str(cli.store), engine=False) as client:
        (act,) = client.store.list_activities(run_id=run_id)
    flag.write_text("fixed\n")
    cli("retry", act.id).ok()  # its help: "needs a running controller or `resume`"
    cli("resume", timeout=60).ok()
    with Client(str(cli.store), engine=False) as client:
        assert client.store.get_run(run_id).state == "succeeded"
        assert client.results(run_id) == "fixed"


# -- 4. controller and worker as separate processes --------------------------------------------
@pytest.mark.slow
def test_submit_to_separate_controller_and_worker(cli: CLI) -> None:
    with services(cli, slots=2) as procs:
        sub = cli.json("submit", f"{BASIC}:simple", "--param", "n=4")
        run_id = sub["run_id"]
        assert run_id.startswith("run-") and sub["status"] == "submitted"
        try:
            final = poll(lambda: _terminal(cli, run_id), deadline=60, what=f"run {run_id} to finish")
        except AssertionError:
            raise AssertionError(service_logs(cli)) from None
        assert final["status"] == "succeeded", service_logs(cli)
        assert final["activities"] == 2 + 4 + 4 + 1
        assert final["products"] == 4

        # an embedded `skyweave run` on the same store is refused while the controller runs
        res = cli("run", f"{BASIC}:simple")
        assert_clean_error(res, "another controller")
        assert_clean_error(cli("resume"), "another controller")     # crash recovery is its job
        with Client(str(cli.store), engine=False) as client:
            assert [r.id for r in client.store.list_runs()] == [run_id]
    # SIGTERM is a clean shutdown for both services
    assert [p.returncode for p in procs] == [0, 0], service_logs(cli)
    assert "Traceback" not in service_logs(cli)


# -- 5. kill -9 in the middle, then resume --------------------------------------------------------
@pytest.mark.slow
def test_kill_9_then_resume(cli: CLI) -> None:
    # the first `free` activities to start finish at once, the rest wait for a gate file: the kill
    # always lands while work is in flight, however slow or loaded the machine is
    n, free = 12, 3
    gate = cli.cwd / "gate"
    log = cli.cwd / "run.log"
    proc = cli.popen("run", f"{BASIC}:gated_fanout", "--param", f"n={n}", "--param", f"free={free}",
                     "--param", f"gate={gate}", "--workers", "1", "--json", log=log)
    try:
        runs = poll(lambda: cli.json("runs"), deadline=60, what="the run to be submitted", interval=0.05)
        run_id = runs[0]["run_id"]

        def free_done() -> bool:
            st = cli.status(run_id)
            ok = [a for a in by_task(st["activities_detail"], "gated") if a["state"] == "succeeded"]
            return len(ok) == free

        poll(free_done, deadline=60, what="the ungated activities to succeed", interval=0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL

    killed = cli.status(run_id)
    assert killed["status"] not in TERMINAL
    done_before = sum(1 for a in by_task(killed["activities_detail"], "gated") if a["state"] == "succeeded")
    assert done_before == free

    gate.write_text("open\n")
    res = cli("resume", timeout=120).ok()
    assert run_id in res.out
    assert "Traceback" not in res.err

    final = cli.status(run_id)
    assert final["status"] == "succeeded"
    busy = by_task(final["activities_detail"], "gated")
    assert len(busy) == n
    assert all(a["state"] == "succeeded" for a in final["activities_detail"])
    assert sorted(int(a["key"]) for a in busy) == list(range(n))

    products = cli.json("products", "list", "--run", run_id)
    ids = [p["id"] for p in products]
    assert len(ids) == len(set(ids))
    assert final["products"] == n
    assert len(products) == n
    assert sorted(p["activity_id"] for p in products) == sorted(a["id"] for a in busy)
    assert sorted(p["name"] for p in products) == sorted(f"gated{i}.txt" for i in range(n))
    # and no orphaned copy of an output written by the killed attempt is left on disk
    on_disk = [f for f in (cli.store / "products" / run_id).rglob("*") if f.is_file()]
    assert sorted(f.name for f in on_disk) == sorted(f"gated{i}.txt" for i in range(n))


# -- 6. parked activities woken by `skyweave products add` ---------------------------------------
def _terminal(cli: CLI, run_id: str) -> dict[str, Any] | None:
    st = cli.status(run_id)
    return st if st["status"] in TERMINAL else None


def _activity(cli: CLI, run_id: str) -> dict[str, Any]:
    (act,) = cli.status(run_id)["activities_detail"]
    return act


@pytest.mark.slow
def test_parked_activities_woken_by_products_add_or_failed_at_deadline(cli: CLI) -> None:
    with services(cli, slots=2):
        long_id = cli.json("submit", f"{PARKING}:wait_long", "--param", "obs_id=obs7")["run_id"]
        short_id = cli.json("submit", f"{PARKING}:wait_short")["run_id"]
        poll(lambda: _activity(cli, long_id)["state"] == "parked", deadline=30,
             what="the park=600 activity to park")
        assert cli.status(long_id)["status"] == "running"

        # park=1 and nobody provides the product: the activity fails at its deadline
        short = poll(lambda: _terminal(cli, short_id), deadline=30, what="the park=1 run to give up")
        assert short["status"] == "failed", service_logs(cli)
        act = _activity(cli, short_id)
        assert act["state"] == "failed"
        logs = flat(cli("logs", act["id"]).ok().out)
        assert "deadline" in logs and "e2e.aux.attitude" in logs

        # a product for another observation must not wake the park=600 one; the right one does
        other = cli.cwd / "other.txt"
        other.write_text("wrong obs\n")
        cli.json("products", "add", str(other), "--type", "e2e.aux.attitude", "--obs-id", "obs8")
        attitude = cli.cwd / "attitude.txt"
        attitude.write_text("ra=83.6 dec=22.0\n")
        added = cli.json("products", "add", str(attitude), "--type", "e2e.aux.attitude", "--obs-id", "obs7")
        assert added["type"] == "e2e.aux.attitude" and added["obs_id"] == "obs7"

        final = poll(lambda: _terminal(cli, long_id), deadline=30, what="the woken run to finish")
        assert final["status"] == "succeeded", service_logs(cli)
        with Client(str(cli.store), engine=False) as client:
            assert client.results(long_id) == "calibrated with ra=83.6 dec=22.0"
