"""Feed a stream of chunks to skyweave as they arrive, one low-priority run per chunk.

    source thread ── chunk file ──▶ BurstStream.feed: register it (nenufar.bursts.chunk, with its
    arrival time), submit ``process_chunk`` at priority ``LOW`` (1) with the *current* detector version
        └▶ score_chunk@<model version> ── nenufar.bursts.detections ──▶ listener on_detection
                                           └▶ followup run at priority 10: cutout ─ plot ─ VOEvent

Model versions: ``install_model`` trains a model in a run of its own (so it is a product with
provenance), then registers ``score_chunk`` at the model's version with
``Client.register_task``: new chunk runs use it from then on, runs already started keep theirs,
and each activity's ``task_version`` shows which model scored the chunk.  Because submitting a
workflow makes the versions of its tasks current again (engine behaviour, docs/dynamic.md), the
stream always submits with the version the store says is current, under a lock shared with
``install_model``.

Chunk boundaries: each chunk run also gets the previous chunk's product when the two are contiguous,
so the detector searches previous + chunk and reports the bursts whose sweep ends in this chunk
(``detect``, "Chunk boundaries"); after a gap or a rejected chunk the next one is searched alone.

Bad input: the stream checks time continuity (``t0`` of each chunk against the previous one plus
``CHUNK_S``) and passes the expected start to the detector, which flags the gap; a source that
stops delivering for ``stall_s`` is reported (``stalls``) and waited for, never fatal.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nenufar_bursts import conventions as cv
from nenufar_bursts.detect import detector_task
from nenufar_bursts.train import train
from skyweave import Client, Product, RunHandle, workflow

LOW = 1


@workflow
def process_chunk(
    chunk: str, model: str, model_version: str, expected_t0: float = -1.0, previous: str = ""
) -> Any:
    """Score one chunk with the detector at ``model_version`` (the model product ``model``), with the
    previous chunk (product id ``previous``, "" for none) as the head of its search window."""
    extra = {"previous": Product("", id=previous)} if previous else {}
    return detector_task(model_version)(
        chunk=Product("", id=chunk), model=Product("", id=model), expected_t0=expected_t0, **extra
    )


@dataclass
class ChunkRecord:
    index: int
    path: str
    t0: float
    arrival: float
    product: str = ""
    run: RunHandle | None = None
    model_version: str = ""
    truth: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None


class BurstStream:
    """Registers arriving chunks and submits their runs; see the module docstring."""

    def __init__(self, client: Client, obs_id: str, *, priority: int = LOW,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        """Seconds since the epoch: chunk arrival times and stall durations."""
        self.obs_id = obs_id
        self.priority = priority
        self.chunks: list[ChunkRecord] = []
        self.stalls: list[dict[str, float]] = []
        self.gaps: list[dict[str, float]] = []
        self.models: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_t0: float | None = None
        self._last_product: str = ""

    # -- models ----------------------------------------------------------------------------------
    def install_model(self, seed: int, n_chunks: int, *, priority: int = 5) -> str:
        """Train a model in a run, register the detector at its version; return the version."""
        handle = self.client.run(train, {"seed": seed, "n_chunks": n_chunks}, priority=priority)
        model = handle.results()["model"]
        with self._lock:
            self.models[model.version] = model.id
            self.client.register_task(detector_task(model.version))
        return str(model.version)

    def current_model(self) -> tuple[str, str]:
        """``(version, model product id)`` of the detector version the store marks current."""
        for spec, current in self.client.store.list_tasks():
            if spec.name == cv.DETECTOR_TASK and current:
                if spec.version not in self.models:
                    found = self.client.store.find_products(type=cv.MODEL, version=spec.version)
                    if not found:
                        raise LookupError(f"no {cv.MODEL} product with version {spec.version}")
                    self.models[spec.version] = found[-1].id
                return spec.version, self.models[spec.version]
        raise LookupError(f"no version of {cv.DETECTOR_TASK} is registered; call install_model first")

    # -- chunks ----------------------------------------------------------------------------------
    def feed(self, path: str | Path, arrival: float | None = None) -> ChunkRecord:
        """Register one arrived chunk file and submit its low-priority run."""
        arrival = self.clock() if arrival is None else arrival
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        expected = -1.0 if self._last_t0 is None else self._last_t0 + cv.CHUNK_S
        if expected >= 0 and abs(meta["t0"] - expected) > 1e-6:
            self.gaps.append({"before_index": meta["index"], "missing_s": meta["t0"] - expected})
        previous = self._last_product if expected >= 0 and abs(meta["t0"] - expected) <= 1e-6 else ""
        self._last_t0 = float(meta["t0"])
        prod = self.client.add_product(
            path,
            type=cv.CHUNK,
            obs_id=meta.get("obs_id", self.obs_id),
            detector=cv.detector_id(meta),
            attributes={"index": meta["index"], "t0": meta["t0"], "arrival": arrival},
            copy=False,
        )
        with self._lock:
            version, model = self.current_model()
            run = self.client.submit(
                process_chunk,
                {"chunk": prod.id, "model": model, "model_version": version, "expected_t0": expected,
                 "previous": previous},
                priority=self.priority,
            )
        self._last_product = prod.id
        rec = ChunkRecord(
            meta["index"],
            str(path),
            float(meta["t0"]),
            arrival,
            prod.id,
            run,
            version,
            meta.get("truth", []),
            meta.get("fault"),
        )
        self.chunks.append(rec)
        return rec

    def consume(self, source: queue.Queue[str | None], stall_s: float) -> None:
        """Feed chunk paths from ``source`` until ``None``; report a stall after ``stall_s`` of silence."""
        waiting_since = self.clock()
        reported = False
        while True:
            try:
                item = source.get(timeout=stall_s)
            except queue.Empty:
                now = self.clock()
                if not reported:
                    self.stalls.append(
                        {
                            "after_index": self.chunks[-1].index if self.chunks else -1,
                            "at": now,
                            "silent_s": now - waiting_since,
                        }
                    )
                    reported = True
                continue
            if item is None:
                return
            if reported:
                self.stalls[-1]["resumed_after_s"] = self.clock() - waiting_since
            reported = False
            self.feed(item)
            waiting_since = self.clock()

    def wait(self, timeout: float = 120.0) -> None:
        """Wait for every chunk run to end."""
        for rec in self.chunks:
            if rec.run is not None:
                rec.run.wait(timeout=timeout)


def play(paths: Iterable[tuple[str, float]], out: queue.Queue[str | None]) -> threading.Thread:
    """A source thread: put each path on ``out`` after its delay (s), then ``None``."""

    def run() -> None:
        for path, delay in paths:
            time.sleep(delay)
            out.put(path)
        out.put(None)

    thread = threading.Thread(target=run, name="burst-source", daemon=True)
    thread.start()
    return thread


def alerts(client: Client, obs_id: str | None = None, *, since: float | None = None) -> list[dict[str, Any]]:
    """VOEvent products (of ``obs_id``, made after ``since`` when given: a store keeps the alerts
    of earlier streams too) with the latency from chunk arrival to the alert (s)."""
    out = []
    match = {"obs_id": obs_id} if obs_id else None
    for p in client.store.find_products(type=cv.VOEVENT, match=match, created_after=since):
        arrival = p.attributes.get("arrival")
        out.append(
            {
                "product": p.id,
                "path": str(p.local_path),
                "index": p.attributes.get("index"),
                "time_s": p.attributes.get("time_s"),
                "dm": p.attributes.get("dm"),
                "snr": p.attributes.get("snr"),
                "model_version": p.attributes.get("model_version"),
                "latency_s": None if arrival is None else p.created_at - float(arrival),
            }
        )
    return out
