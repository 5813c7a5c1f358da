"""The trigger process: turns each trigger's events into runs, one run per event.

Each step, for every trigger in the store:

1. runs it fired earlier but no controller has taken yet are announced again (a process killed
   between its store commit and its bus publish loses no run: announcing twice is harmless);
2. held events are released, oldest first, as far as the concurrency limit allows (after a pause
   with ``on_pause: coalesce`` the newest of them starts one run, the others are recorded as
   coalesced into it);
3. the source is polled; events whose key is already in the ledger are counted as skipped and
   start nothing; each new one becomes a run (parameters filled from its fields), a *held* row
   (paused, or at the concurrency limit) or a *rejected* one (malformed, or its parameters cannot
   be filled) - ledger rows, runs and the source's cursor in ONE store transaction;
4. the runs are announced on the bus and the source told what was recorded (a message source
   commits its bus offset only now).

A kill at any point repeats at most the uncommitted part of a step, which the ledger makes
harmless: tested by counting in tests/integration/test_triggers_crash.py.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from skyweave.authoring.loader import split_target
from skyweave.authoring.targets import load_workflow
from skyweave.authoring.workflow import Workflow
from skyweave.client import Client
from skyweave.errors import NotFoundError, SkyweaveError
from skyweave.model.records import RunRecord
from skyweave.model.triggers import (
    Firing,
    FiringState,
    PausePolicy,
    TriggerEvent,
    TriggerKind,
    TriggerRecord,
    TriggerSpec,
    TriggerState,
)
from skyweave.triggers.messages import MessageSource
from skyweave.triggers.objects import ObjectSource
from skyweave.triggers.registered import by_name
from skyweave.triggers.sources import FileSource, ScheduleSource, Source

log = logging.getLogger(__name__)

BATCH = 500
"""Events recorded per store transaction."""
PAUSED = "trigger paused"
LIMIT = "at its concurrency limit"

_WHOLE_FIELD = re.compile(r"^\{(\w+)\}$")


class FillError(SkyweaveError):
    """A trigger's parameters cannot be filled from an event."""


def fill_params(params: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow parameters of one event: ``"{field}"`` alone keeps the field's value and type,
    other strings are formatted with the fields, anything else is passed as it is."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(value, str):
            out[name] = value
            continue
        whole = _WHOLE_FIELD.match(value)
        try:
            out[name] = fields[whole.group(1)] if whole else value.format_map(fields)
        except KeyError as exc:
            raise FillError(
                f"parameter {name!r} needs the field {exc.args[0]!r}, which this event does not "
                f"have (it has: {', '.join(sorted(fields)) or 'none'})",
                hint="fix the trigger's params or pattern, then re-fire the event",
            ) from None
        except (ValueError, IndexError) as exc:
            raise FillError(
                f"parameter {name!r}: the template {value!r} cannot be filled ({exc})",
                hint="write fields as {name}; double a brace to keep it: {{",
            ) from None
    return out


def open_source(spec: TriggerSpec, wake: threading.Event | None = None, **extra: Any) -> Source:
    """The source of a trigger (``extra``: the bus, for messages and VOEvents)."""
    if spec.kind is TriggerKind.FILES:
        return FileSource(spec, wake)
    if spec.kind is TriggerKind.OBJECTS:
        return ObjectSource(spec, wake)
    if spec.kind is TriggerKind.SCHEDULE:
        return ScheduleSource(spec, wake)
    return MessageSource(spec, extra["bus"], wake)


class TriggerService:
    """Runs the triggers of one store (all of them, or those named)."""

    def __init__(
        self, client: Client, names: Sequence[str] | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.store = client.store
        self.names = list(names) if names else None
        self.clock = clock
        self.sources: dict[str, tuple[TriggerSpec, Source]] = {}
        self.fired = 0
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._workflows: dict[str, tuple[int, Workflow]] = {}

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Step until ``stop`` is set (or once); waits for sources between steps."""
        stop = stop or self._stop
        try:
            while not stop.is_set():
                retry_at = self.step()
                if once:
                    return
                self._wait(stop, retry_at)
        finally:
            self.close()

    def _wait(self, stop: threading.Event, retry_at: float | None) -> None:
        """Until a source notices something, the earliest retry time, or at most a second."""
        deadline = time.monotonic() + (
            1.0 if retry_at is None else min(1.0, max(0.0, retry_at - self.clock()))
        )
        on_bus = any(
            spec.kind in (TriggerKind.MESSAGES, TriggerKind.VOEVENTS) for spec, _ in self.sources.values()
        )
        while not stop.is_set() and not self.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if on_bus:  # returns at a post; a step every 0.1 s at most also sees file notifications
                self.client.bus.wait(min(left, 0.1))
                break
            self.wake.wait(left)
        self.wake.clear()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for _, source in self.sources.values():
            source.close()
        self.sources.clear()

    def step(self) -> float | None:
        """One pass over every trigger; returns when to poll again at the latest."""
        retry: list[float] = []
        for record in self._records():
            try:
                at = self.step_trigger(record)
            except SkyweaveError as exc:
                log.error("trigger %s: %s (%s)", record.spec.name, exc.message, exc.hint)
                continue
            if at is not None:
                retry.append(at)
        return min(retry, default=None)

    def _records(self) -> list[TriggerRecord]:
        records = self.store.list_triggers()
        if self.names is not None:
            missing = set(self.names) - {r.spec.name for r in records}
            if missing:
                raise NotFoundError(
                    f"no trigger named {', '.join(sorted(missing))}",
                    hint="add it with `skyweave triggers add FILE`; list with `skyweave triggers list`",
                )
            records = [r for r in records if r.spec.name in self.names]
        for gone in set(self.sources) - {r.spec.name for r in records}:
            self.sources.pop(gone)[1].close()
        return records

    def _source(self, record: TriggerRecord) -> Source:
        known = self.sources.get(record.spec.name)
        if known is not None and known[0] == record.spec:
            return known[1]
        if known is not None:  # redefined (`triggers add --replace`): a fresh source
            known[1].close()
        else:  # first sight in this process: runs a killed predecessor stored but never announced
            self.client.announce(self.store.unannounced_runs(record.spec.name))
        source = open_source(record.spec, self.wake, bus=self.client.bus)
        self.sources[record.spec.name] = (record.spec, source)
        return source

    # -- one trigger ------------------------------------------------------------------------------
    def step_trigger(self, record: TriggerRecord) -> float | None:
        spec = record.spec
        source = self._source(record)
        now = self.clock()
        free = self._capacity(spec)
        if record.state is TriggerState.ACTIVE:
            free = self._release_held(spec, free, now)
        poll = source.poll(record, now)
        fresh = self._unknown(spec.name, poll.events)
        for i in range(0, max(len(fresh), 1), BATCH):
            chunk = fresh[i : i + BATCH]
            firings, runs = [], []
            for event in chunk:
                firing, run = self._decide(record, event, free, now)
                if run is not None:
                    free = None if free is None else free - 1
                    runs.append(run)
                firings.append(firing)
            last = i + BATCH >= len(fresh)
            recorded = self.store.record_firings(
                spec.name, firings, runs, cursor=poll.cursor if last else None
            )
            self._announce(firings, recorded)
        source.done(poll, [e.key for e in fresh])
        return poll.retry_at

    def _unknown(self, trigger: str, events: Sequence[TriggerEvent]) -> list[TriggerEvent]:
        """The events whose keys are not in the ledger yet; the others are counted as skipped."""
        if not events:
            return []
        known = self.store.known_keys(trigger, [e.key for e in events])
        if known:
            self.store.count_skipped(trigger, len(known))
        seen: set[str] = set()
        fresh = []
        for e in events:
            if e.key not in known and e.key not in seen:
                seen.add(e.key)
                fresh.append(e)
        return fresh

    def _capacity(self, spec: TriggerSpec) -> int | None:
        if spec.concurrency is None:
            return None
        return max(0, spec.concurrency - len(self.store.trigger_runs(spec.name)))

    def _decide(
        self, record: TriggerRecord, event: TriggerEvent, free: int | None, now: float
    ) -> tuple[Firing, RunRecord | None]:
        base: dict[str, Any] = {
            "trigger": record.spec.name,
            "key": event.key,
            "at": event.at or now,
            "recorded_at": now,
            "fields": event.fields,
        }
        if event.state is not None:
            return Firing(**base, state=event.state, reason=event.reason), None
        if record.state is TriggerState.PAUSED:
            return Firing(**base, state=FiringState.HELD, reason=PAUSED), None
        if free is not None and free <= 0:
            return Firing(**base, state=FiringState.HELD, reason=f"{LIMIT} ({record.spec.concurrency})"), None
        return self._fire(record.spec, event.key, event.fields, base)

    def _fire(
        self, spec: TriggerSpec, key: str, fields: Mapping[str, Any], base: dict[str, Any], reason: str = ""
    ) -> tuple[Firing, RunRecord | None]:
        try:
            params = fill_params(spec.params, fields)
            named = by_name(spec)  # NAME@VERSION: resolved as submit(NAME, version=V) resolves it
            run = self.client.prepare_run(
                spec.workflow if named else self._workflow(spec.workflow),
                params,
                workflow_ref=None if named else spec.workflow,
                priority=spec.priority,
                labels={**spec.labels, "trigger": spec.name, "trigger.key": key},
            )
        except SkyweaveError as exc:
            why = exc.message + (f" ({exc.hint})" if exc.hint else "")
            return Firing(**base, state=FiringState.REJECTED, reason=why), None
        return Firing(**base, state=FiringState.FIRED, run_id=run.id, reason=reason), run

    def _workflow(self, ref: str) -> Workflow:
        """The workflow ``ref`` names, imported once (again only when its file changed): importing a
        file per event would cost more than the rest of a firing."""
        path = Path(split_target(ref)[0])
        stamp = (
            path.stat().st_mtime_ns
            if path.suffix in (".py", ".yaml", ".yml", ".json") and path.is_file()
            else 0
        )
        cached = self._workflows.get(ref)
        if cached is None or cached[0] != stamp:
            cached = (stamp, load_workflow(ref))
            self._workflows[ref] = cached
        return cached[1]

    def _release_held(self, spec: TriggerSpec, free: int | None, now: float) -> int | None:
        held = self.store.trigger_history(spec.name, states=[FiringState.HELD], limit=None, oldest_first=True)
        if not held:
            return free
        firings: list[Firing] = []
        runs: list[RunRecord] = []
        paused = [h for h in held if h.reason == PAUSED]
        if spec.on_pause is PausePolicy.COALESCE and len(paused) > 1:
            newest = paused[-1]
            for h in paused[:-1]:
                firings.append(
                    Firing(
                        trigger=h.trigger,
                        key=h.key,
                        state=FiringState.COALESCED,
                        at=h.at,
                        recorded_at=now,
                        fields=h.fields,
                        reason=f"held while paused; coalesced into {newest.key} on resume",
                    )
                )
            held = [h for h in held if h.reason != PAUSED or h is newest]
        for h in held:
            if free is not None and free <= 0:
                break
            base: dict[str, Any] = {
                "trigger": h.trigger,
                "key": h.key,
                "at": h.at,
                "recorded_at": now,
                "fields": h.fields,
            }
            firing, run = self._fire(spec, h.key, h.fields, base, reason=f"released (was held: {h.reason})")
            firings.append(firing)
            if run is not None:
                runs.append(run)
                free = None if free is None else free - 1
        recorded = self.store.record_firings(spec.name, firings, runs)
        self._announce(firings, recorded)
        return free

    def _announce(self, firings: Sequence[Firing], recorded: Sequence[str]) -> None:
        done = set(recorded)
        runs = [f.run_id for f in firings if f.run_id is not None and f.key in done]
        if runs:
            self.client.announce(runs)
            self.fired += len(runs)

    # -- on purpose -----------------------------------------------------------------------------------
    def refire(self, trigger: str, key: str) -> str:
        """Fire an event of the ledger again on purpose; returns the new run's id."""
        record = self.store.get_trigger(trigger)
        known = [f for f in self.store.trigger_history(trigger, limit=None) if f.key == key]
        if not known:
            raise NotFoundError(
                f"trigger {trigger!r} has no event with key {key!r}",
                hint=f"`skyweave triggers history {trigger}` lists its events and keys",
            )
        old = known[0]
        now = self.clock()
        base: dict[str, Any] = {
            "trigger": trigger,
            "key": key,
            "at": old.at,
            "recorded_at": now,
            "fields": old.fields,
        }
        firing, run = self._fire(
            record.spec,
            key,
            old.fields,
            base,
            reason=f"re-fired on purpose (was {old.state.value}"
            f"{', run ' + old.run_id if old.run_id else ''})",
        )
        if run is None:
            raise FillError(f"trigger {trigger!r} cannot fire {key!r} again: {firing.reason}")
        self.store.record_firings(trigger, [firing], [run], refire=True)
        self.client.announce([run.id])
        return run.id
