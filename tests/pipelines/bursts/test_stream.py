"""The stream front end on its own: a source that goes silent is reported as a stall and waited
for, and the chunks after it are fed in order (the engine side is in test_engine.py)."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from nenufar_bursts.stream import BurstStream, ChunkRecord, play


class FeedRecorder(BurstStream):
    """A stream whose ``feed`` only records what it is given (no engine needed for the front end)."""

    def __init__(self) -> None:
        super().__init__(client=None, obs_id="stall-test")  # type: ignore[arg-type]

    def feed(self, path: str) -> Any:
        rec = ChunkRecord(index=len(self.chunks), path=path, t0=10.0 * len(self.chunks), arrival=0.0)
        self.chunks.append(rec)
        return rec


def test_a_stalled_source_is_reported_and_waited_for(tmp_path: Path) -> None:
    stream = FeedRecorder()
    source: queue.Queue[str | None] = queue.Queue()
    paths = [str(tmp_path / f"c{i}.npz") for i in range(4)]
    play([(paths[0], 0.0), (paths[1], 0.0), (paths[2], 0.8), (paths[3], 0.0)], source)
    stream.consume(source, stall_s=0.2)
    assert [c.path for c in stream.chunks] == paths           # nothing lost, in order
    (stall,) = stream.stalls                                   # reported once, not every 0.2 s
    assert stall["after_index"] == 1
    assert 0.2 <= stall["silent_s"] < 0.8
    assert 0.7 <= stall["resumed_after_s"] < 5.0


def test_a_source_that_ends_cleanly_is_not_a_stall(tmp_path: Path) -> None:
    stream = FeedRecorder()
    source: queue.Queue[str | None] = queue.Queue()
    play([(str(tmp_path / "c0.npz"), 0.0)], source)           # then None at once: a clean end
    stream.consume(source, stall_s=0.2)
    assert len(stream.chunks) == 1 and stream.stalls == []
