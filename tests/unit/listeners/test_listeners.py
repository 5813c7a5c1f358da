"""Listeners see bus events by pattern, can start runs, and cannot crash the controller."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from skyweave import Client
from skyweave.errors import DefinitionError
from skyweave.listeners import Listener, ListenerContext, listener, load_listener
from tests.unit.listeners import flows

FLOWS = str(Path(flows.__file__).resolve())


def _wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Recorder(Listener):
    name = "recorder"
    patterns = ("activity.failed", "run.*")

    def __init__(self) -> None:
        self.topics: list[str] = []
        self.follow_ups: list[str] = []
        self.lock = threading.Lock()

    def on_event(self, topic: str, event: Any, ctx: ListenerContext) -> None:
        with self.lock:
            self.topics.append(topic)
        if topic == "activity.failed" and ctx.submit is not None:
            self.follow_ups.append(ctx.submit(f"{FLOWS}:urgent", {"reason": event.task}, 9))


@listener("*")
def crashes(topic: str, event: Any, ctx: ListenerContext) -> None:
    raise RuntimeError("a broken listener")


def test_listener_reacts_and_a_broken_one_cannot_stop_the_controller(tmp_path: Path) -> None:
    rec = Recorder()
    with Client(str(tmp_path / "st"), executor="threads", workers=2, listeners=[crashes, rec]) as client:
        run = client.run(flows.failing, timeout=30)
        assert run.status == "failed"
        _wait_for(lambda: rec.follow_ups)
        follow = client.get(rec.follow_ups[0]).wait(timeout=30)
        assert follow.status == "succeeded"
        assert follow.results() == "followed up: explode"
        assert follow.record.priority == 9
        _wait_for(lambda: "run.failed" in rec.topics)
        assert "activity.failed" in rec.topics
        assert not any(t.startswith("activity.succeeded") for t in rec.topics), "pattern filters"
        assert client.engine is not None
        assert client.engine.listeners is not None
        assert client.engine.listeners.errors.get("crashes", 0) > 0
        client.engine.check()  # the controller thread is alive and well


def test_load_listener_by_path_and_entry_point(tmp_path: Path) -> None:
    src = tmp_path / "mylisteners.py"
    src.write_text("from skyweave.listeners import listener\n"
                   "@listener('product.created')\n"
                   "def on_product(topic, event, ctx):\n    pass\n")
    loaded = load_listener(f"{src}:on_product")
    assert loaded.wants("product.created")
    assert not loaded.wants("activity.failed")
    assert load_listener("log").name == "log"
    with pytest.raises(DefinitionError, match="no listener entry point named 'nope'"):
        load_listener("nope")
    with pytest.raises(DefinitionError, match="cannot load listener 'no_such_module:x'") as raised:
        load_listener("no_such_module:x")
    assert "module:NAME of a module in the directory skyweave was started in" in str(raised.value.hint)


def test_results_of_a_failed_run_raise_with_the_reason(tmp_path: Path) -> None:
    from skyweave.errors import RunFailedError

    with Client(str(tmp_path / "st"), executor="threads", workers=1) as client:
        run = client.run(flows.failing, timeout=30)
        with pytest.raises(RunFailedError, match=r"explode\) failed: bad input 1"):
            run.results()


def test_a_failure_reaches_activity_failed_listeners_once_with_its_run_and_task(tmp_path: Path) -> None:
    topics: list[str] = []
    fields: list[tuple[str, str, str, str]] = []

    @listener("activity.*", "run.*")
    def note_endings(topic: str, event: Any, ctx: ListenerContext) -> None:
        topics.append(topic)
        if topic.startswith("activity."):  # the fields docs/operations.md lists (raises if one is missing)
            fields.append((event.run_id, event.activity_id, event.task, event.state))

    with Client(str(tmp_path / "st"), executor="threads", workers=1, listeners=[note_endings]) as client:
        run = client.run(flows.failing, timeout=30)
        assert run.status == "failed"
        (act,) = run.activities()
        engine = client.engine
    assert engine is not None
    assert engine.listeners is not None
    assert engine.listeners.errors == {}
    assert topics == ["run.running", "activity.failed", "run.failed"], "one event per fact"
    assert fields == [(run.id, act.id, "explode", "failed")]
