"""The loop of ``skyweave listen``: its own group, matching announcements only, a commit after each
handled event (never before), retries then skip, and nothing committed for an event it was stopped in."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from skyweave.bus.memory import MemoryBus
from skyweave.errors import DefinitionError
from skyweave.listeners.process import CommandHandler, ListenLoop, event_env, event_json, split_patterns
from skyweave.model import messages as m
from tests.unit.listeners.test_host import announce


def loop(bus: MemoryBus, handler: Any, **kw: Any) -> ListenLoop:
    return ListenLoop(bus, "team", ["activity.*", "product.created"], handler, backoff_s=0.0, **kw)


def test_hears_matching_announcements_in_order_and_commits_after_each() -> None:
    bus = MemoryBus()
    lp = loop(bus, None)
    lp.join()
    seen: list[tuple[str, str, str]] = []
    uncommitted: list[bool] = []

    def handler(topic: str, event: Any, offset: str) -> None:
        # the event in hand is not committed yet (a kill now would deliver it again), the one
        # before it is
        unread = [item.offset for item in bus.read("team", 1000)]
        uncommitted.append(offset in unread and not any(o in unread for _, _, o in seen))
        seen.append((topic, event.activity_id, offset))

    lp.handler = handler
    ids = announce(bus, 3)
    bus.publish([m.encode_message("run", m.RunStateChanged(run_id="run-1", state="succeeded"))])
    lp.step(bus.read("team", 100))
    assert [(t, a) for t, a, _ in seen] == [("activity.succeeded", i) for i in ids]
    assert uncommitted == [True, True, True]
    assert bus.read("team", 100) == [], "the run event it does not want is committed past too"
    assert lp.handled == 3


def test_a_failing_handler_is_retried_then_skipped_and_the_loop_goes_on() -> None:
    bus = MemoryBus()
    lp = loop(bus, None, retries=2)
    lp.join()
    calls: list[str] = []

    def handler(topic: str, event: Any, offset: str) -> None:
        calls.append(event.activity_id)
        if event.activity_id == "act-00":
            raise RuntimeError("down")

    lp.handler = handler
    announce(bus, 2)
    lp.step(bus.read("team", 100))
    assert calls == ["act-00", "act-00", "act-00", "act-01"]
    assert (lp.failed, lp.handled) == (1, 1)
    assert bus.read("team", 100) == []


def test_stopped_while_an_event_fails_it_is_not_committed() -> None:
    bus = MemoryBus()
    lp = loop(bus, None, retries=5)
    lp.join()

    def handler(topic: str, event: Any, offset: str) -> None:
        lp.stop.set()  # SIGTERM arrives while the handler is failing
        raise RuntimeError("killed")

    lp.handler = handler
    announce(bus, 2)
    lp.step(bus.read("team", 100))
    left = bus.read("team", 100)
    assert [m.decode_message(i.data).body.activity_id for i in left                # type: ignore[union-attr]
            if isinstance(m.decode_message(i.data).body, m.ActivityStateChanged)] == ["act-00", "act-01"]
    assert lp.failed == 0


def test_group_and_patterns_are_checked() -> None:
    with pytest.raises(DefinitionError, match="controller's own"):
        ListenLoop(MemoryBus(), "controller", ["*"], lambda *_: None)
    with pytest.raises(DefinitionError, match="no topic pattern"):
        split_patterns(" , ")
    assert split_patterns("activity.failed, run.*") == ("activity.failed", "run.*")
    with pytest.raises(DefinitionError, match="empty command"):
        CommandHandler("  ")


def test_a_command_gets_the_event_on_stdin_and_as_variables(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    script = tmp_path / "take.py"
    script.write_text("import json, os, sys\n"
                      "data = json.load(sys.stdin)\n"
                      "data['env'] = {k: v for k, v in os.environ.items() if k.startswith('SKYWEAVE_')}\n"
                      f"open({str(out)!r}, 'w').write(json.dumps(data))\n"
                      "sys.exit(int(os.environ.get('FAIL', '0')))\n")
    event = m.ProductCreated(product=m.NewProduct(id="prd-1", uri="file:///x", type="fits"), run_id="run-1",
                             activity_id="act-1", at=1.5)
    CommandHandler(f"{sys.executable} {script}", environ={})("product.created", event, "42")
    got = json.loads(out.read_text())
    assert got["topic"] == "product.created" and got["offset"] == "42"
    assert got["event"] == event_json("product.created", event, "42")["event"]
    assert got["event"]["product"]["id"] == "prd-1"
    assert got["env"] == event_env("product.created", event, "42") == {
        "SKYWEAVE_TOPIC": "product.created", "SKYWEAVE_OFFSET": "42", "SKYWEAVE_RUN_ID": "run-1",
        "SKYWEAVE_ACTIVITY_ID": "act-1", "SKYWEAVE_PRODUCT_ID": "prd-1"}
    with pytest.raises(RuntimeError, match=r"exited 3 on product\.created"):
        CommandHandler(f"{sys.executable} {script}", environ={"FAIL": "3"})("product.created", event, "42")
