"""The workflow registry of a SQL store (``WorkflowRegistry``): rows of ``workflows``, one per
(name, version), each with the code snapshot of that version and its hash.

A registered version never changes: registering the same code again returns the row already
there, different code under the same version is refused.  "Latest" is the version registered last.
Shared by the SQL backends; the backend provides ``url``, ``_engine`` (reads) and ``_writer``
(write transactions).
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from skyweave.errors import NotFoundError, VersionConflictError
from skyweave.model.records import WorkflowRecord
from skyweave.store.base import Store
from skyweave.store.schema import WORKFLOW, insert_new, workflows


class WorkflowRegistry(Store):
    """``register_workflow``, ``get_workflow`` and ``list_workflows`` in SQL."""

    url: str
    _engine: Engine
    _writer: Engine

    def register_workflow(self, record: WorkflowRecord) -> WorkflowRecord:
        with self._writer.begin() as conn:
            conn.execute(insert_new(conn.dialect, workflows, ["name", "version"]).values(
                **WORKFLOW.to_row(record)))
            row = conn.execute(select(*WORKFLOW.columns).where(
                workflows.c.name == record.name, workflows.c.version == record.version)).one()
        stored = WORKFLOW.from_row(row)
        if stored.code_hash != record.code_hash:
            raise VersionConflictError(
                f"workflow {record.name!r} version {record.version!r} is already registered with different "
                f"code (registered {stored.code_hash[:19]} from {stored.origin}; this is "
                f"{record.code_hash[:19]}); a registered version never changes",
                hint=f"register the new code as a new version (--version), or leave --version out: the "
                     f"default version follows the code; `skyweave workflows list {record.name}` shows "
                     f"the versions")
        return stored

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowRecord:
        query = select(*WORKFLOW.columns).where(workflows.c.name == name)
        if version is not None:
            query = query.where(workflows.c.version == version)
        query = query.order_by(workflows.c.registered_at.desc(), workflows.c.version.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is not None:
            return WORKFLOW.from_row(row)
        known = self.list_workflows(name)
        what = f"{name}@{version}" if version is not None else name
        if known:
            listing = ", ".join(f"{w.name}@{w.version}" for w in known)
            hint = f"registered versions of {name!r}: {listing}"
        else:
            names = sorted({w.name for w in self.list_workflows()})
            hint = ("registered workflows: " + ", ".join(names) if names else "no workflow is registered") \
                + "; register one with `skyweave workflows register PATH.py:NAME --version V`"
        raise NotFoundError(f"no registered workflow {what!r} in store {self.url}", hint=hint,
                            kind="workflow", id=what)

    def list_workflows(self, name: str | None = None) -> list[WorkflowRecord]:
        query = select(*WORKFLOW.columns)
        if name is not None:
            query = query.where(workflows.c.name == name)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(workflows.c.name, workflows.c.registered_at,
                                               workflows.c.version)).all()
        return [WORKFLOW.from_row(r) for r in rows]
