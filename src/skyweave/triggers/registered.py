"""Triggers that start a registered workflow (``workflow: imaging@2``; ``skyweave workflows``).

A trigger names a registered workflow as ``NAME@VERSION`` or ``NAME``.  ``declare`` (what
``skyweave triggers add`` does) checks the registry and fixes a bare ``NAME`` to the version
registered last *at declaration*: registering a new version is not a decision to run it on every
event from then on, a trigger fires unattended (half a night's files must not run one version and
half the next), and ``triggers list`` shows what it runs.  Moving a trigger to a new version is
``triggers add --replace``, which keeps its ledger.  Each firing goes through
``Client.prepare_run`` as ``submit(NAME, version=V)`` does: the run records ``NAME@VERSION`` and
the snapshot's hash, and is pinned to the snapshot's task versions.  (A spec saved with a bare
``NAME`` some other way, ``store.save_trigger``, runs the version registered last at each firing,
as ``submit`` does.)
"""

from __future__ import annotations

import msgspec

from skyweave.authoring.targets import load_workflow
from skyweave.errors import NotFoundError, WorkflowLoadError
from skyweave.model.triggers import TriggerSpec
from skyweave.store.base import Store
from skyweave.workflows import parse


def by_name(spec: TriggerSpec) -> bool:
    """Whether a trigger names its workflow as ``NAME@VERSION`` or ``NAME`` (registered, or a
    ``module`` to import), not as a file or ``module:NAME``.  The trigger process then passes the
    name to ``prepare_run`` as it is, which resolves it as ``submit`` does."""
    return parse(spec.workflow) is not None


def declare(store: Store, spec: TriggerSpec) -> TriggerSpec:
    """``spec`` ready to save: a registered workflow checked (``NotFoundError`` lists what the
    registry has) and a bare ``NAME`` fixed to ``NAME@VERSION``; any other spec as it is."""
    wanted = parse(spec.workflow)
    if wanted is None:
        return spec
    if wanted.version is None and not store.list_workflows(wanted.name):
        try:  # not registered: a module whose one workflow it starts, as before the registry
            load_workflow(spec.workflow)
            return spec
        except WorkflowLoadError as exc:
            try:
                store.get_workflow(wanted.name)
            except NotFoundError as missing:
                raise NotFoundError(f"trigger {spec.name!r}: {missing.message}, nor a workflow to import "
                                    f"({exc.message})", hint=missing.hint) from exc
            raise
    try:
        record = store.get_workflow(wanted.name, wanted.version)
    except NotFoundError as missing:
        raise NotFoundError(f"trigger {spec.name!r}: {missing.message}", hint=missing.hint) from None
    return msgspec.structs.replace(spec, workflow=f"{record.name}@{record.version}")
