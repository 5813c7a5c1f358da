"""A malformed task declaration is refused where it is written; a task row an older skyweave
registered malformed no longer breaks ``run`` or ``tasks list``, and ``tasks remove`` takes it out
(issue 11, point 6)."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, insert

from skyweave.model.specs import OutputSpec, TaskKind, TaskSpec
from skyweave.store.schema import encode_json, task_routes, tasks

from .helpers import CLI, WORKFLOWS, flat

MALFORMED = '''
from skyweave import command, workflow

stats = command("stats", "sh -c 'wc -c < /etc/hostname > {outputs.stats}'",
                outputs={"stats": {"path": "stats.txt", "type": "my.stats"}})


@workflow
def counted():
    return stats()
'''


def test_a_malformed_declaration_is_refused_and_registers_nothing(cli: CLI) -> None:
    (cli.cwd / "wf.py").write_text(MALFORMED)
    res = cli("run", "wf.py:counted")
    assert res.code == 2 and "Traceback" not in res.err and res.err.count("error:") == 1
    text = flat(res.err)
    assert "wf.py:4: task 'stats': outputs['stats'] is a dict" in text
    assert "hint: write outputs={'stats': OutputSpec(path='stats.txt', type='my.stats')}" in text
    assert cli.json("tasks", "list") == []


def test_a_row_that_cannot_be_read_is_reported_skipped_and_removable(cli: CLI) -> None:
    cli("run", f"{WORKFLOWS / 'basic.py'}:failing", "--json")  # a store with tasks and a run
    bad = TaskSpec(name="stats", version="1", kind=TaskKind.COMMAND, ref="echo",
                   outputs={"stats": OutputSpec(path={"path": "s.txt"})})  # type: ignore[arg-type]
    engine = create_engine(f"sqlite:///{cli.store / 'skyweave.db'}")
    with engine.begin() as conn:  # as an older skyweave registered it, unchecked
        conn.execute(insert(tasks), {"name": "stats", "version": "1", "spec": encode_json(bad),
                                     "code_hash": "h", "registered_at": time.time()})
        conn.execute(insert(task_routes), {"name": "stats", "version": "1", "updated_at": time.time()})
    engine.dispose()

    listed = cli("tasks", "list", "--json").ok()
    assert [t["name"] for t in listed.json()] == ["explode"]
    warning = flat(listed.err)
    assert "skipped task stats@1" in warning and "`skyweave tasks remove stats@1`" in warning
    assert "Traceback" not in listed.err
    run = cli("run", f"{WORKFLOWS / 'basic.py'}:simple", "--json").ok()  # unrelated work goes on
    assert run.json()["status"] == "succeeded"

    removed = cli("tasks", "remove", "stats@1").ok()
    assert "removed stats@1; stats has no registered version left" in flat(removed.out)
    after = cli("tasks", "list", "--json").ok()
    assert "stats" not in after.err and "stats" not in {t["name"] for t in after.json()}

    kept = cli("tasks", "remove", "explode@1")  # it ran: provenance needs its definition
    assert kept.code == 5 and "explode@1 cannot be removed: 1 activity" in flat(kept.err)
