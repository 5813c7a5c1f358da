"""The task registry of a SQL store: every registered (name, version) with its spec, and which
version each name routes to (``TaskRegistry``).

A registered version never changes: registering the same spec again is a no-op, a different spec
under the same version is refused.  Shared by the SQL backends; the backend provides ``_engine``,
``_writer`` (write transactions) and ``_route`` (its dialect's upsert of the route).
"""

from __future__ import annotations

import difflib
import time

import msgspec
from sqlalchemy import Connection, Engine, insert, select

from skyweave.errors import DefinitionError, UnknownTaskError
from skyweave.model.specs import TaskSpec
from skyweave.store.base import Store
from skyweave.store.schema import encode_json, task_routes, tasks

_TASK_DECODER = msgspec.json.Decoder(TaskSpec)


class TaskRegistry(Store):
    """``register_task``, ``set_current_version``, ``get_task`` and ``list_tasks`` in SQL."""

    _engine: Engine
    _writer: Engine
    url: str

    @staticmethod
    def _route(conn: Connection, name: str, version: str, now: float) -> None:
        """Route ``name`` to ``version`` (insert or update the route row)."""
        raise NotImplementedError

    def register_task(self, spec: TaskSpec, *, make_current: bool = True) -> None:
        """Add ``spec``; re-registering an identical spec is a no-op, a different one is refused.

        The first version registered under a name becomes current even with ``make_current=False``
        (a task must route somewhere); later ones only when ``make_current`` is true.
        """
        now = time.time()
        with self._writer.begin() as conn:
            stored = conn.execute(select(tasks.c.spec).where(
                tasks.c.name == spec.name, tasks.c.version == spec.version)).scalar_one_or_none()
            if stored is None:
                conn.execute(insert(tasks), {"name": spec.name, "version": spec.version,
                                             "spec": encode_json(spec), "code_hash": spec.code_hash,
                                             "registered_at": now})
            elif _TASK_DECODER.decode(stored) != spec:
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
        return _TASK_DECODER.decode(stored)

    def list_tasks(self) -> list[tuple[TaskSpec, bool]]:
        query = (select(tasks.c.spec, task_routes.c.version == tasks.c.version)
                 .outerjoin(task_routes, task_routes.c.name == tasks.c.name)
                 .order_by(tasks.c.name, tasks.c.registered_at, tasks.c.version))
        with self._engine.connect() as conn:
            return [(_TASK_DECODER.decode(spec), bool(current)) for spec, current in conn.execute(query)]

    def _unknown_task(self, conn: Connection, name: str, version: str | None) -> UnknownTaskError:
        names = list(conn.execute(select(tasks.c.name).distinct().order_by(tasks.c.name)).scalars())
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            return UnknownTaskError(
                f"no task named {name!r} — registered: {', '.join(names) or '(none)'}",
                hint=f"did you mean {close[0]!r}?" if close
                else "register the task first (`skyweave registry`), or check --store",
                task=name, known=names, store=self.url)
        versions = list(conn.execute(select(tasks.c.version).where(tasks.c.name == name)
                                     .order_by(tasks.c.registered_at)).scalars())
        return UnknownTaskError(
            f"task {name!r} has no version {version!r} — registered versions: {', '.join(versions)}",
            hint="register that version first, or pick one of these",
            task=name, version=version, known=versions, store=self.url)

