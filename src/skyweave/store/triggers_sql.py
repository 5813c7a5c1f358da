"""The triggers of a SQL store and their ledger (``TriggerLedger``).

A trigger is one row of ``triggers`` (its spec as JSON, active or paused, its cursor, a count of
events seen again); each event it observed is one row of ``trigger_firings``, unique per
(trigger, key).  ``record_firings`` writes ledger rows, the runs they start and the trigger's
cursor in ONE transaction, and writes a run only for a ledger row it actually inserted (or moved
out of ``held``): an event seen twice - by a restarted trigger process, a rescan, a redelivered
message, two processes at once - never starts two runs.  Shared by the SQL backends; the backend
provides ``_engine`` (reads) and ``_writer`` (write transactions).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select, update

from skyweave.errors import ControlError, NotFoundError
from skyweave.model.records import RunRecord
from skyweave.model.states import RUN_TERMINAL, RunState
from skyweave.model.triggers import (
    PRUNABLE_KINDS,
    Firing,
    FiringState,
    TriggerRecord,
    TriggerSpec,
    TriggerState,
)
from skyweave.store.base import Store
from skyweave.store.schema import RUN, encode_json, insert_new, runs, trigger_firings, triggers

_SPEC = msgspec.json.Decoder(TriggerSpec)
_FIELDS = msgspec.json.Decoder(dict)
_CHUNK = 500
"""Keys per ``IN (...)`` list when looking keys up."""


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"no trigger named {name!r}", hint="list them with `skyweave triggers list`")


def _firing(row: Sequence[Any]) -> Firing:
    seq, trigger, key, state, at, recorded_at, fields, run_id, reason = row
    return Firing(
        seq=int(seq),
        trigger=str(trigger),
        key=str(key),
        state=FiringState(str(state)),
        at=float(at),
        recorded_at=float(recorded_at),
        fields=_FIELDS.decode(str(fields)),
        run_id=None if run_id is None else str(run_id),
        reason=str(reason),
    )


_F = trigger_firings.c
_FIRING_COLUMNS = (
    _F.seq,
    _F.trigger,
    _F.key,
    _F.state,
    _F.at,
    _F.recorded_at,
    _F.fields,
    _F.run_id,
    _F.reason,
)


class TriggerLedger(Store):
    """Trigger definitions and the one-row-per-event ledger, in SQL."""

    _engine: Engine
    _writer: Engine

    # -- definitions ------------------------------------------------------------------------------
    def save_trigger(self, spec: TriggerSpec, *, replace: bool = False) -> TriggerRecord:
        now = time.time()
        row = {
            "name": spec.name,
            "spec": encode_json(spec),
            "state": TriggerState.ACTIVE.value,
            "cursor": None,
            "skipped": 0,
            "created_at": now,
            "updated_at": now,
        }
        with self._writer.begin() as conn:
            found = conn.execute(select(triggers.c.name).where(triggers.c.name == spec.name)).first()
            if found is not None and not replace:
                raise ControlError(
                    f"a trigger named {spec.name!r} exists already",
                    hint="give it another name, or replace it with "
                    "`skyweave triggers add FILE --replace` (its ledger is kept)",
                )
            if found is None:
                conn.execute(triggers.insert().values(**row))
            else:  # replaced: the definition changes, its state, cursor and ledger stay
                conn.execute(
                    update(triggers)
                    .where(triggers.c.name == spec.name)
                    .values(spec=row["spec"], updated_at=now)
                )
        return self.get_trigger(spec.name)

    def get_trigger(self, name: str) -> TriggerRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(triggers).where(triggers.c.name == name)).first()
        if row is None:
            raise _not_found(name)
        return self._record(row)

    def list_triggers(self) -> list[TriggerRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(triggers).order_by(triggers.c.name)).all()
        return [self._record(r) for r in rows]

    @staticmethod
    def _record(row: Sequence[object]) -> TriggerRecord:
        _name, spec, state, cursor, skipped, created_at, updated_at = row
        return TriggerRecord(
            spec=_SPEC.decode(str(spec)),
            state=TriggerState(str(state)),
            cursor=None if cursor is None else str(cursor),
            skipped=int(str(skipped)),
            created_at=float(str(created_at)),
            updated_at=float(str(updated_at)),
        )

    def set_trigger_state(self, name: str, state: TriggerState) -> TriggerRecord:
        with self._writer.begin() as conn:
            done = conn.execute(
                update(triggers)
                .where(triggers.c.name == name)
                .values(state=state.value, updated_at=time.time())
            )
        if done.rowcount == 0:
            raise _not_found(name)
        return self.get_trigger(name)

    def remove_trigger(self, name: str, *, forget: bool = False) -> int:
        """Take the trigger out; with ``forget`` its ledger goes too (a trigger added again under
        the name would then fire for events already fired).  Returns the ledger rows deleted."""
        with self._writer.begin() as conn:
            done = conn.execute(delete(triggers).where(triggers.c.name == name))
            if done.rowcount == 0:
                raise _not_found(name)
            if not forget:
                return 0
            return int(conn.execute(delete(trigger_firings).where(_F.trigger == name)).rowcount)

    # -- the ledger ---------------------------------------------------------------------------------
    def record_firings(
        self,
        trigger: str,
        firings: Sequence[Firing],
        new_runs: Sequence[RunRecord] = (),
        *,
        cursor: str | None = None,
        refire: bool = False,
    ) -> list[str]:
        """Record ``firings`` and the runs they start in one transaction; return the keys recorded.

        A key already in the ledger is not recorded again (counted in ``skipped``) and its run is not
        written - unless the row is ``held`` and this firing moves it on (fired, coalesced...), or
        ``refire`` (fire an event again on purpose: the row is replaced, its reason says so).
        ``cursor``, when given, is stored in the same transaction.
        """
        by_run = {r.id: r for r in new_runs}
        recorded: list[str] = []
        skipped = 0
        with self._writer.begin() as conn:
            if conn.execute(select(triggers.c.name).where(triggers.c.name == trigger)).first() is None:
                raise _not_found(trigger)
            insert = insert_new(conn.dialect, trigger_firings, ["trigger", "key"]).returning(_F.key)
            for f in firings:
                row = {
                    "trigger": trigger,
                    "key": f.key,
                    "state": f.state.value,
                    "at": f.at,
                    "recorded_at": f.recorded_at,
                    "fields": encode_json(f.fields),
                    "run_id": f.run_id,
                    "reason": f.reason,
                }
                if conn.execute(insert, row).first() is not None or self._move_on(conn, row, refire=refire):
                    recorded.append(f.key)
                    if f.run_id is not None and f.run_id in by_run:
                        conn.execute(insert_new(conn.dialect, runs, ["id"]), RUN.to_row(by_run[f.run_id]))
                else:
                    skipped += 1
            values: dict[str, object] = {"updated_at": time.time()}
            if cursor is not None:
                values["cursor"] = cursor
            if skipped:
                values["skipped"] = triggers.c.skipped + skipped
            conn.execute(update(triggers).where(triggers.c.name == trigger).values(**values))
        return recorded

    @staticmethod
    def _move_on(conn: Connection, row: Mapping[str, Any], *, refire: bool) -> bool:
        """Update the existing ledger row of ``row``'s key: a held one to its next state, any one
        when re-firing on purpose.  ``True`` if this call changed it."""
        where = (_F.trigger == row["trigger"]) & (_F.key == row["key"])
        if not refire:
            if row["state"] == FiringState.HELD.value:
                return False
            where = where & (_F.state == FiringState.HELD.value)
        values = {k: v for k, v in row.items() if k not in ("trigger", "key", "at")}
        return bool(conn.execute(update(trigger_firings).where(where).values(**values)).rowcount == 1)

    def count_skipped(self, trigger: str, n: int) -> None:
        """Add ``n`` events seen again after they were already in the ledger."""
        with self._writer.begin() as conn:
            conn.execute(
                update(triggers).where(triggers.c.name == trigger).values(skipped=triggers.c.skipped + n)
            )

    def known_keys(self, trigger: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are in the trigger's ledger already (any state)."""
        found: set[str] = set()
        with self._engine.connect() as conn:
            for i in range(0, len(keys), _CHUNK):
                chunk = list(keys[i : i + _CHUNK])
                found.update(
                    str(k)
                    for k in conn.execute(
                        select(_F.key).where((_F.trigger == trigger) & _F.key.in_(chunk))
                    ).scalars()
                )
        return found

    def trigger_history(
        self,
        trigger: str,
        *,
        states: Sequence[FiringState] | None = None,
        limit: int | None = 100,
        oldest_first: bool = False,
    ) -> list[Firing]:
        query = select(*_FIRING_COLUMNS).where(_F.trigger == trigger)
        if states is not None:
            query = query.where(_F.state.in_([s.value for s in states]))
        query = query.order_by(_F.seq if oldest_first else _F.seq.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            return [_firing(r) for r in conn.execute(query).all()]

    def trigger_counts(self, trigger: str) -> dict[str, int]:
        """Ledger rows of the trigger per state."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_F.state, func.count()).where(_F.trigger == trigger).group_by(_F.state)
            ).all()
        return {str(s): int(n) for s, n in rows}

    def trigger_runs(self, trigger: str, *, unfinished: bool = True) -> dict[str, str]:
        """Run id -> run state of the runs the trigger started (only unfinished ones by default)."""
        query = (
            select(runs.c.id, runs.c.state)
            .join(trigger_firings, _F.run_id == runs.c.id)
            .where(_F.trigger == trigger)
        )
        if unfinished:
            query = query.where(runs.c.state.not_in([s.value for s in RUN_TERMINAL]))
        with self._engine.connect() as conn:
            return {str(i): str(s) for i, s in conn.execute(query).all()}

    def unannounced_runs(self, trigger: str) -> list[str]:
        """Runs the trigger started that no controller has taken yet (``submitted``)."""
        return [r for r, s in self.trigger_runs(trigger).items() if s == RunState.SUBMITTED.value]

    # -- retention ----------------------------------------------------------------------------------
    def prune_trigger_firings(self, before: float, *, batch: int = 10_000,
                              dry_run: bool = False) -> dict[str, int]:
        """Batched deletes, one short transaction per batch (a long one would hold back
        PostgreSQL's vacuum horizon and slow every queue query); the old rows are found by the
        (trigger, recorded_at, seq) index (``_delete_in_batches`` says how they are deleted)."""
        pruned: dict[str, int] = {}
        for record in self.list_triggers():
            if record.spec.kind not in PRUNABLE_KINDS:
                continue
            old = ((_F.trigger == record.spec.name) & (_F.recorded_at < before)
                   & (_F.state != FiringState.HELD.value))
            if dry_run:
                with self._engine.connect() as conn:
                    n = int(conn.execute(select(func.count()).where(old)).scalar_one())
            else:
                n = self._delete_in_batches(old, batch)
            if n:
                pruned[record.spec.name] = n
        return pruned

    def _delete_in_batches(self, old: ColumnElement[bool], batch: int) -> int:
        """Windows of ``batch`` consecutive ``seq`` numbers from the first old row to the last, each
        deleted in one transaction by a primary-key range (rows are numbered as they are recorded,
        so the old ones are mostly one run of numbers; the heap is read in order).  Faster than
        reading keys and deleting them by key (an index probe per row: 25x slower than one DELETE
        at 100,000 rows) or ``seq IN (SELECT … LIMIT n)``, which PostgreSQL answered with a hash
        join over the whole ledger per batch (bench/prune_bench.py)."""
        with self._engine.connect() as conn:
            first, last = conn.execute(select(func.min(_F.seq), func.max(_F.seq)).where(old)).one()
        if first is None:
            return 0
        n = 0
        for start in range(int(first), int(last) + 1, batch):
            window = old & _F.seq.between(start, start + batch - 1)
            with self._writer.begin() as conn:
                n += int(conn.execute(delete(trigger_firings).where(window)).rowcount)
        return n
