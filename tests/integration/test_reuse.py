"""Reuse across runs on the real engine: outputs are checked before reuse, never silently."""

from __future__ import annotations

from pathlib import Path

from skyweave import Client
from skyweave.examples import mini_xray
from skyweave.storage.local import LocalStorage

PARAMS = {"obs_id": "reuse1", "seed": 3}


def test_rerun_reuses_and_a_tampered_output_is_recomputed(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=2) as client:
        first = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert first.status == "succeeded"
        made = first.products()

        second = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert second.status == "succeeded"
        assert second.results() == first.results()
        acts = second.activities()
        assert acts, "the second run has activities"
        assert all(a.detours and a.detours[-1].kind == "reused" for a in acts), \
            [(a.task_name, [d.kind for d in a.detours]) for a in acts]
        assert second.products() == [], "reuse registers no copies"

        # someone edits one output file behind skyweave's back
        events = next(p for p in made if p.type == "demo.l1.events")
        path = LocalStorage.local_path(events.uri)
        path.write_text(path.read_text().replace("]", " ]", 1))
        third = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert third.status == "succeeded"
        redone = [a for a in third.activities() if not (a.detours and a.detours[-1].kind == "reused")]
        assert [a.task_name for a in redone] == ["decode_events"]
        (miss,) = [d for d in redone[0].detours if d.kind == "cache-miss"]
        assert "modified behind skyweave's back" in miss.reason
        assert events.id in miss.reason
        # its new output has the original content (the simulation is seeded), so what consumed
        # it is reused again: recomputation stops where content stops changing
        assert len(third.products()) == 1

        # a deleted output file is noticed too (the newest copy is the third run's)
        (remade,) = third.products()
        LocalStorage.local_path(remade.uri).unlink()
        fourth = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert fourth.status == "succeeded"
        misses = [d.reason for a in fourth.activities() for d in a.detours if d.kind == "cache-miss"]
        assert len(misses) == 1
        assert "is gone from" in misses[0]
