"""The task registry of a SQL store: every registered (name, version) with its spec, and which
version each name routes to (``TaskRegistry``).

A registered version never changes: registering the same spec again is a no-op, a different spec
under the same version is refused.  A spec is decoded back before it is written, so a row is always
readable; a row that still cannot be read (written by a skyweave that did not check, or edited by
hand) is reported once per process and skipped by ``list_tasks``, listed by ``unreadable_tasks``,
and can be taken out with ``remove_task`` (``skyweave tasks remove NAME@VERSION``) - it never
stops commands that have nothing to do with it.  Shared by the SQL backends; the backend provides ``_engine``
and ``_writer`` (write transactions).
"""

from __future__ import annotations

import difflib
import json
import logging
import time

import msgspec
from sqlalchemy import Connection, Engine, delete, func, insert, select

from skyweave.errors import ControlError, DefinitionError, StoreError, UnknownTaskError
from skyweave.model.specs import TaskSpec
from skyweave.model.states import RUN_TERMINAL
from skyweave.store.base import RemovedTask, Store, UnreadableTask
from skyweave.store.schema import activities, dialect_insert, encode_json, runs, task_routes, tasks

log = logging.getLogger(__name__)

_TASK_DECODER = msgspec.json.Decoder(TaskSpec)

_REPORTED: set[tuple[str, str, str]] = set()
"""(store URL, name, version) of the unreadable rows this process has already warned about."""


def _remove_hint(name: str, version: str) -> str:
    return f"take it out of the registry with `skyweave tasks remove {name}@{version}`"


class TaskRegistry(Store):
    """``register_task``, ``set_current_version``, ``get_task`` and ``list_tasks`` in SQL."""

    _engine: Engine
    _writer: Engine
    url: str

    @staticmethod
    def _route(conn: Connection, name: str, version: str, now: float) -> None:
        """Route ``name`` to ``version`` (insert or update the route row)."""
        stmt = dialect_insert(conn.dialect, task_routes).values(name=name, version=version, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["name"], set_={"version": version, "updated_at": now}))

    def register_task(self, spec: TaskSpec, *, make_current: bool = True) -> None:
        """Add ``spec``; re-registering an identical spec is a no-op, a different one is refused.

        The first version registered under a name becomes current even with ``make_current=False``
        (a task must route somewhere); later ones only when ``make_current`` is true.
        """
        now = time.time()
        encoded = _encoded(spec)
        with self._writer.begin() as conn:
            stored = conn.execute(select(tasks.c.spec).where(
                tasks.c.name == spec.name, tasks.c.version == spec.version)).scalar_one_or_none()
            if stored is None:
                conn.execute(insert(tasks), {"name": spec.name, "version": spec.version,
                                             "spec": encoded, "code_hash": spec.code_hash,
                                             "registered_at": now})
            elif self._decode(spec.name, spec.version, stored) != spec:
                raise DefinitionError(
                    f"task {spec.key!r} is already registered with a different definition",
                    hint="give the changed task a new version (e.g. bump it in @task(version=...)) and "
                         "register that; a registered version never changes",
                    task=spec.name, version=spec.version)
            routed = conn.execute(select(task_routes.c.version).where(
                task_routes.c.name == spec.name)).scalar_one_or_none()
            if make_current or routed is None:
                self._route(conn, spec.name, spec.version, now)

    def set_current_version(self, name: str, version: str) -> None:
        with self._writer.begin() as conn:
            exists = conn.execute(select(tasks.c.version).where(
                tasks.c.name == name, tasks.c.version == version)).scalar_one_or_none()
            if exists is None:
                raise self._unknown_task(conn, name, version)
            self._route(conn, name, version, time.time())

    def get_task(self, name: str, version: str | None = None) -> TaskSpec:
        with self._engine.connect() as conn:
            if version is None:
                version = conn.execute(select(task_routes.c.version).where(
                    task_routes.c.name == name)).scalar_one_or_none()
            stored = None if version is None else conn.execute(select(tasks.c.spec).where(
                tasks.c.name == name, tasks.c.version == version)).scalar_one_or_none()
            if stored is None:
                raise self._unknown_task(conn, name, version)
        assert version is not None
        return self._decode(name, version, stored)

    def list_tasks(self) -> list[tuple[TaskSpec, bool]]:
        found: list[tuple[TaskSpec, bool]] = []
        for row in self._task_rows():
            try:
                found.append((_TASK_DECODER.decode(row[2]), bool(row[3])))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._report(row[0], row[1], exc)
        return found

    def unreadable_tasks(self) -> list[UnreadableTask]:
        problems = []
        for name, version, text, current in self._task_rows():
            try:
                _TASK_DECODER.decode(text)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                problems.append(UnreadableTask(name=name, version=version, error=str(exc), spec=text,
                                               current=bool(current)))
        return problems

    def remove_task(self, name: str, version: str) -> RemovedTask:
        with self._writer.begin() as conn:
            text = conn.execute(select(tasks.c.spec).where(
                tasks.c.name == name, tasks.c.version == version)).scalar_one_or_none()
            if text is None:
                raise self._unknown_task(conn, name, version)
            readable = _readable(text)
            used = conn.execute(select(func.count(), func.min(activities.c.run_id)).where(
                activities.c.task_name == name, activities.c.task_version == version)).one()
            if used[0] and readable:
                raise ControlError(
                    f"task {name}@{version} cannot be removed: {used[0]} activit"
                    f"{'y' if used[0] == 1 else 'ies'} (run {used[1]}{' and others' if used[0] > 1 else ''}) "
                    "ran it, and their provenance names its definition",
                    hint=f"register a new version and make it current (`skyweave tasks register "
                         f"FILE.py:{name}`); {name}@{version} stays for the record",
                    task=name, version=version, activities=used[0])
            waiting = self._unfinished_runs_using(conn, name, version)
            if waiting:
                raise ControlError(
                    f"task {name}@{version} cannot be removed: unfinished run {waiting[0]} will run it",
                    hint=f"let the run finish, or cancel it first (`skyweave cancel {waiting[0]}`)",
                    task=name, version=version, runs=waiting)
            conn.execute(delete(tasks).where(tasks.c.name == name, tasks.c.version == version))
            routed = conn.execute(select(task_routes.c.version).where(
                task_routes.c.name == name)).scalar_one_or_none()
            current = routed
            if routed == version:
                current = conn.execute(select(tasks.c.version).where(tasks.c.name == name).order_by(
                    tasks.c.registered_at.desc(), tasks.c.version.desc()).limit(1)).scalar_one_or_none()
                if current is None:
                    conn.execute(delete(task_routes).where(task_routes.c.name == name))
                else:
                    self._route(conn, name, current, time.time())
        return RemovedTask(name=name, version=version, spec=text, readable=readable,
                           activities=int(used[0]), current=current)

    def _task_rows(self) -> list[tuple[str, str, str, bool]]:
        query = (select(tasks.c.name, tasks.c.version, tasks.c.spec, task_routes.c.version == tasks.c.version)
                 .outerjoin(task_routes, task_routes.c.name == tasks.c.name)
                 .order_by(tasks.c.name, tasks.c.registered_at, tasks.c.version))
        with self._engine.connect() as conn:
            return [(row[0], row[1], row[2], bool(row[3])) for row in conn.execute(query)]

    def _decode(self, name: str, version: str, text: str) -> TaskSpec:
        """The spec stored for ``name@version``; ``StoreError`` saying how to remove an unreadable one."""
        try:
            return _TASK_DECODER.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StoreError(
                f"task {name}@{version} is registered in store {self.url} but its definition cannot be "
                f"read ({exc})", hint=f"{_remove_hint(name, version)}, then declare and register it again",
                task=name, version=version, store=self.url) from exc

    def _report(self, name: str, version: str, exc: Exception) -> None:
        if (self.url, name, version) in _REPORTED:
            return
        _REPORTED.add((self.url, name, version))
        log.warning("skipped task %s@%s in store %s: its definition cannot be read (%s); %s",
                    name, version, self.url, exc, _remove_hint(name, version))

    @staticmethod
    def _unfinished_runs_using(conn: Connection, name: str, version: str) -> list[str]:
        unfinished = select(runs.c.id, runs.c.graph, runs.c.pins).where(
            runs.c.state.not_in([s.value for s in RUN_TERMINAL]))
        using = []
        for run_id, graph, pins in conn.execute(unfinished):
            try:
                wired = json.loads(graph).get("tasks", {})
                pinned = json.loads(pins)
            except (ValueError, AttributeError):
                continue
            if pinned.get(name, wired.get(name)) == version:
                using.append(run_id)
        return using

    def _unknown_task(self, conn: Connection, name: str, version: str | None) -> UnknownTaskError:
        names = list(conn.execute(select(tasks.c.name).distinct().order_by(tasks.c.name)).scalars())
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            return UnknownTaskError(
                f"no task named {name!r} — registered: {', '.join(names) or '(none)'}",
                hint=f"did you mean {close[0]!r}?" if close
                else "register the task first (`skyweave tasks register FILE.py:TASK`), or check --store",
                task=name, known=names, store=self.url)
        versions = list(conn.execute(select(tasks.c.version).where(tasks.c.name == name)
                                     .order_by(tasks.c.registered_at)).scalars())
        return UnknownTaskError(
            f"task {name!r} has no version {version!r} — registered versions: {', '.join(versions)}",
            hint="register that version first, or pick one of these",
            task=name, version=version, known=versions, store=self.url)



def _encoded(spec: TaskSpec) -> str:
    """The spec as stored, checked to decode back: a row every later command can read."""
    try:
        text = encode_json(spec)
        _TASK_DECODER.decode(text)
    except (TypeError, msgspec.EncodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DefinitionError(f"task {spec.name}@{spec.version} has a malformed definition, not registered: "
                              f"{exc}", hint="declare it with @task(...) or command(...), which check "
                                             "every field", task=spec.name, version=spec.version) from exc
    return text


def _readable(text: str) -> bool:
    try:
        _TASK_DECODER.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True
