"""`reprocess --dry-run` says what would re-run and why; reprocess then re-runs exactly that."""

from __future__ import annotations

import textwrap
from pathlib import Path

from skyweave import Client
from skyweave import reprocess as rp
from skyweave.examples import mini_xray
from skyweave.storage.local import LocalStorage

NEW_DETECT = textwrap.dedent('''
    from typing import Any
    from skyweave import Product, task

    @task(version="2.0")
    def detect_sources(events: Product) -> dict[str, Any]:
        return {"detector": events.detector, "sources": 0, "truth": 0}
''')


def test_plan_then_reprocess_after_a_new_task_version(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        run = client.run(mini_xray.observation, {"obs_id": "rp1", "seed": 5}, timeout=60)
        assert run.status == "succeeded"
        quiet = rp.plan(client.store, run_id=run.id)
        assert quiet.rerun == [], "nothing changed, nothing to re-run"

        (tmp_path / "detect2.py").write_text(NEW_DETECT)
        client.register_task(f"{tmp_path / 'detect2.py'}:detect_sources")
        plan = rp.plan(client.store, run_id=run.id)
        rerun = {a.task for a in plan.rerun}
        assert rerun == {"detect_sources", "merge_counts"}
        for item in plan.rerun:
            if item.task == "detect_sources":
                assert item.reasons == ["task detect_sources is now at version 2.0 (was 1.1)"]
            else:
                assert "upstream step detect_sources re-runs" in item.reasons[0]
        n_detect = sum(1 for a in plan.activities if a.task == "detect_sources")

        again = rp.resubmit(client.store, run.id)
        client.bus.publish([rp.announce(again)])
        final = client.wait(again.id, timeout=60)
        assert final.state == "succeeded"
        acts = client.store.list_activities(run_id=again.id)
        ran = sorted(a.task_name for a in acts if not (a.detours and a.detours[-1].kind == "reused"))
        assert ran == ["detect_sources"] * n_detect + ["merge_counts"]
        assert client.results(again.id)["sources_found"] == 0
        assert final.parent_run == run.id


def test_plan_notices_a_changed_input_file(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        run = client.run(mini_xray.observation, {"obs_id": "rp2", "seed": 5}, timeout=60)
        events = next(p for p in run.products() if p.type == "demo.l1.events")
        LocalStorage.local_path(events.uri).write_text("{}")
        plan = rp.plan(client.store, product_id=events.id)
        assert plan.runs == [run.id]
        reasons = {a.task: a.reasons for a in plan.rerun}
        assert any("changed on disk" in r for r in reasons["decode_events"])
        assert [a.task for a in plan.rerun].count("calibrate") == 1
        assert any("comes from" in r for r in reasons["calibrate"])


GATHER = textwrap.dedent('''
    from typing import Any
    from skyweave import Product, context, task, workflow

    @task(version="{version}")
    def parts(n: int) -> list[int]:
        return list(range(n))

    @task(version="{version}")
    def make(i: int) -> Product:
        path = context().output(f"part{{i}}.txt")
        path.write_text(str(i))
        return Product(path, type="demo.part")

    @task(version="1.0")
    def join(files: list[Product]) -> int:
        return len(files)

    @workflow
    def gathered(n: int = 5) -> Any:
        return join(files=make.map(i=parts(n=n)))
''')


def test_a_gather_of_re_running_products_gets_one_reason_not_one_per_product(tmp_path: Path) -> None:
    """`reprocess --dry-run` of a gather over a fan-out of five products whose maker changed says
    why once ("5 products ... from 5 activities"), not five identical lines (issue 18 point 3)."""
    flow = tmp_path / "gathered.py"
    flow.write_text(GATHER.format(version="1.0"))
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        run = client.run(f"{flow}:gathered", {"n": 5}, timeout=60)
        assert run.results() == 5
        (tmp_path / "v2").mkdir()
        (tmp_path / "v2" / "gathered.py").write_text(GATHER.format(version="2.0"))
        client.register_task(f"{tmp_path / 'v2' / 'gathered.py'}:make")
        plan = rp.plan(client.store, run_id=run.id)
        [join] = [a for a in plan.rerun if a.task == "join"]
        assert len(join.reasons) == 1, join.reasons
        assert join.reasons[0].startswith("input 'files' (5 products) comes from 5 activities that re-run ("), (
            join.reasons)
