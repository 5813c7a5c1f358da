"""The stream front end on its own: a source that goes silent is reported as a stall and waited
for, and the chunks after it are fed in order (the engine side is in test_engine.py).

The source is scripted and the stream's clock is the source's: each time the stream waits
``stall_s`` in vain, that much time passes.  Nothing sleeps, and the figures are exact."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest

from nenufar_bursts.stream import BurstStream, ChunkRecord

SILENT = object()
"""In a script: the source delivers nothing for the whole ``get`` timeout."""


class ScriptedSource(queue.Queue[str | None]):
    """Delivers its script in order; ``SILENT`` makes one ``get`` time out, advancing the clock."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__()
        self.script = list(script)
        self.now = 1_000.0

    def clock(self) -> float:
        return self.now

    def get(self, block: bool = True, timeout: float | None = None) -> str | None:
        item = self.script.pop(0)
        if item is SILENT:
            assert timeout is not None
            self.now += timeout
            raise queue.Empty
        return item  # type: ignore[no-any-return]


class FeedRecorder(BurstStream):
    """A stream whose ``feed`` only records what it is given (no engine needed for the front end)."""

    def __init__(self, source: ScriptedSource) -> None:
        super().__init__(client=None, obs_id="stall-test", clock=source.clock)  # type: ignore[arg-type]

    def feed(self, path: str) -> Any:
        rec = ChunkRecord(index=len(self.chunks), path=path, t0=10.0 * len(self.chunks), arrival=0.0)
        self.chunks.append(rec)
        return rec


def test_a_stalled_source_is_reported_once_and_waited_for(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"c{i}.npz") for i in range(4)]
    source = ScriptedSource([paths[0], paths[1], SILENT, SILENT, SILENT, SILENT, paths[2], paths[3], None])
    stream = FeedRecorder(source)
    stream.consume(source, stall_s=0.2)
    assert [c.path for c in stream.chunks] == paths           # nothing lost, in order
    (stall,) = stream.stalls                                   # reported once, not every 0.2 s
    assert stall["after_index"] == 1
    assert stall["silent_s"] == pytest.approx(0.2)             # reported after one silent wait
    assert stall["resumed_after_s"] == pytest.approx(0.8)      # four silent waits in all
    assert source.script == []


def test_each_silence_is_a_stall_of_its_own(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"c{i}.npz") for i in range(3)]
    source = ScriptedSource([paths[0], SILENT, paths[1], SILENT, SILENT, paths[2], None])
    stream = FeedRecorder(source)
    stream.consume(source, stall_s=0.5)
    assert [(s["after_index"], s["silent_s"], s["resumed_after_s"]) for s in stream.stalls] == [
        (0, pytest.approx(0.5), pytest.approx(0.5)), (1, pytest.approx(0.5), pytest.approx(1.0))]


def test_a_source_that_ends_cleanly_is_not_a_stall(tmp_path: Path) -> None:
    source = ScriptedSource([str(tmp_path / "c0.npz"), None])   # then None at once: a clean end
    stream = FeedRecorder(source)
    stream.consume(source, stall_s=0.2)
    assert len(stream.chunks) == 1 and stream.stalls == []
