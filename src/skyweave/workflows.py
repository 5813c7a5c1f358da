"""The workflow registry: register a workflow version (its code snapshot and hash) and submit it
later by name and version (``skyweave workflows register``, ``skyweave submit NAME@VERSION``,
``Client.submit("NAME", version=...)``, ``POST /api/v1/runs {"workflow": NAME, "version": V}``).

A registered version runs from its *snapshot*: the text of its file when it was registered,
kept in the store (table ``workflows``) and written out under ``<store dir>/workflows/<hash>/``
to be loaded, so a run of ``imaging@2`` runs exactly the code registered as version 2, whatever
became of the file since; the run records ``NAME@VERSION`` and the snapshot's hash.  The snapshot
is the file alone: a workflow registered by name reaches its tasks through installed modules
(``mypkg.tasks:NAME``) or defines them in its own file; registration loads the snapshot, so one
that needs files beside it is refused then, not when it is submitted.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from skyweave.authoring.interactive import assemble, defined_interactively
from skyweave.authoring.loader import split_target
from skyweave.authoring.targets import DECLARATIVE_SUFFIXES, load_workflow
from skyweave.authoring.workflow import Workflow
from skyweave.errors import DefinitionError, NotFoundError, ParameterError, SkyweaveError, WorkflowLoadError
from skyweave.model.records import WorkflowRecord
from skyweave.store.base import Store

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
"""A registered workflow's name: letters, digits, ``_``, ``.``, ``-``; a letter or ``_`` first."""
VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
"""A version label: ``1``, ``2.0.1``, ``2026-12-06``, ``v3+local``."""
MAX_SOURCE_BYTES = 4 << 20
FILE_SUFFIXES = (".py", *DECLARATIVE_SUFFIXES)


@dataclass(frozen=True)
class Registered:
    """A workflow named by its registration: ``version`` ``None`` is the one registered last."""

    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.version is not None:
            check_version(self.version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ParameterError(f"{str(name)[:80]!r} is not a workflow name",
                             hint="a registered workflow's name is letters, digits, '_', '.' or '-' "
                                  "(at most 100), starting with a letter or '_'")
    return name


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise ParameterError(f"{str(version)[:80]!r} is not a version label",
                             hint="a version is letters, digits, '_', '.', '+' or '-' (at most 64), "
                                  "e.g. 1, 2.0.1 or 2026-12-06")
    return version


def parse(target: str) -> Registered | None:
    """``NAME`` or ``NAME@VERSION`` as a ``Registered`` when ``target`` is written like one (no
    ``:``, no path separator, no file suffix); ``None`` for files and ``module:NAME``."""
    if ":" in target or "/" in target or "\\" in target or target.lower().endswith(FILE_SUFFIXES):
        return None
    name, at, version = target.partition("@")
    return Registered(name, version if at else None)


def code_hash(source: str) -> str:
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    kind: str
    filename: str
    entry: str
    source: str
    origin: str


def snapshot(target: str | Workflow) -> Snapshot:
    """The file a workflow comes from, as text: ``PATH.py:NAME``, ``PATH.yaml``, ``module:NAME``,
    or a ``@workflow`` object (defined in a file, or in a notebook cell: its assembled module)."""
    if isinstance(target, Workflow):
        if defined_interactively(target.fn):
            return Snapshot("python", f"{target.fn.__name__}.py", target.fn.__name__, assemble(target),
                            f"{target.fn.__module__}:{target.fn.__name__}")
        source = inspect.getsourcefile(target.fn)
        if source is None or not Path(source).is_file():
            raise DefinitionError(f"workflow {target.name!r} has no source file to register",
                                  hint="define it in a .py file and register PATH.py:NAME")
        return _file(Path(source), target.fn.__name__, f"{target.fn.__module__}:{target.fn.__name__}")
    where, attr = split_target(target)
    if where.lower().endswith(FILE_SUFFIXES) or "/" in where or "\\" in where:
        path = Path(where).expanduser().absolute()
        if path.suffix.lower() == ".py" and not attr:
            raise ParameterError(f"say which workflow of {path.name} to register",
                                 hint=f"register {where}:NAME (the @workflow function's name)")
        return _file(path, attr or "", str(path) + (f":{attr}" if attr else ""))
    wf = load_workflow(target)  # module:NAME of an installed package: its module's file
    return snapshot(wf)


def _file(path: Path, entry: str, origin: str) -> Snapshot:
    if not path.is_file():
        raise DefinitionError(f"no workflow file {str(path)!r}", hint="give the path of an existing file")
    data = path.read_bytes()
    if len(data) > MAX_SOURCE_BYTES:
        raise DefinitionError(f"{path.name} is {len(data)} bytes; a registered workflow file may be "
                              f"at most {MAX_SOURCE_BYTES}", hint="move data out of the workflow file")
    try:
        source = data.decode()
    except UnicodeDecodeError:
        raise DefinitionError(f"{path.name} is not UTF-8 text",
                              hint="register a Python or YAML file") from None
    kind = "python" if path.suffix.lower() == ".py" else "declarative"
    return Snapshot(kind, path.name, entry, source, origin)


def materialise(record: WorkflowRecord, folder: Path) -> Path:
    """The snapshot as a file under ``folder/<hash>/`` (written once, atomically)."""
    target = folder / record.code_hash.split(":")[-1][:24] / record.filename  # file name checked by callers
    if not target.is_file() or code_hash(target.read_text()) != record.code_hash:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial.write_text(record.source)
        partial.replace(target)
    return target


def load(record: WorkflowRecord, folder: Path) -> Workflow:
    """The workflow of a registered version, loaded from its snapshot."""
    path = materialise(record, folder)
    return load_workflow(f"{path}:{record.entry}" if record.entry else str(path))


def register(store: Store, target: str | Workflow, folder: Path, *, version: str | None = None,
             name: str | None = None, source: Snapshot | None = None) -> tuple[WorkflowRecord, bool]:
    """Register ``target`` (or the ``source`` given, e.g. an upload) as ``name`` (default: the
    workflow's own name) at ``version`` (default: from the code); ``(record, new)``."""
    if name is not None:
        check_name(name)
    snap = source or snapshot(target)
    digest = code_hash(snap.source)
    label = check_version(version) if version is not None else digest.split(":")[-1][:12]
    draft = WorkflowRecord(name="-", version=label, kind=snap.kind, filename=snap.filename,
                           entry=snap.entry, source=snap.source, code_hash=digest, origin=snap.origin,
                           registered_at=time.time())
    kept = folder / digest.split(":")[-1][:24]
    existed = kept.exists()
    try:
        wf = load(draft, folder)  # the snapshot alone must load: that is what runs
    except SkyweaveError as exc:
        if not existed:  # a file that defines no loadable workflow leaves nothing behind
            shutil.rmtree(kept, ignore_errors=True)
        raise DefinitionError(
            f"{snap.origin}: the workflow does not load from its snapshot: {exc.message}",
            hint="a registered workflow runs from its file alone: name its tasks by installed module "
                 "(mypkg.tasks:NAME) or define them in the file" + (f" ({exc.hint})" if exc.hint else "")
        ) from exc
    chosen = check_name(name or wf.name)
    entry = snap.entry or (wf.name if snap.kind == "declarative" else "")
    record = WorkflowRecord(name=chosen, version=label, kind=snap.kind, filename=snap.filename, entry=entry,
                            source=snap.source, code_hash=digest, origin=snap.origin,
                            registered_at=draft.registered_at)
    stored = store.register_workflow(record)
    return stored, stored.registered_at == record.registered_at


def resolve(store: Store, folder: Path, workflow: Workflow | Registered | str,
            version: str | None = None, *,
            loaded: dict[str, Workflow] | None = None) -> tuple[Workflow, str, str]:
    """What a submission names, loaded: ``(workflow, reference, code hash)``.  A registered
    workflow (``Registered``, ``NAME@VERSION``, a bare ``NAME`` the store has registered, or any
    name with ``version``) comes from its snapshot, referenced as ``NAME@VERSION`` with its hash;
    anything else loads as before and has no hash.  ``loaded``: snapshots loaded before, by code
    hash (a snapshot never changes, so a trigger firing thousands of runs imports it once)."""
    chosen = _registered(store, workflow, version)
    if chosen is not None:
        record = store.get_workflow(chosen.name, chosen.version)
        wf = loaded.get(record.code_hash) if loaded is not None else None
        if wf is None:
            wf = load(record, folder)
            if loaded is not None:
                loaded[record.code_hash] = wf
        return wf, f"{record.name}@{record.version}", record.code_hash
    if isinstance(workflow, Workflow):
        return workflow, f"{workflow.fn.__module__}:{workflow.name}", ""
    assert isinstance(workflow, str)
    try:
        return load_workflow(workflow), workflow, ""
    except WorkflowLoadError as exc:
        bare = parse(workflow)
        if bare is None:
            raise
        try:
            store.get_workflow(bare.name)
        except NotFoundError as missing:  # neither registered nor importable: say both
            raise NotFoundError(f"{missing.message}, nor a workflow to import ({exc.message})",
                                hint=missing.hint) from exc
        raise


def _registered(store: Store, workflow: Workflow | Registered | str,
                version: str | None) -> Registered | None:
    if isinstance(workflow, Registered):
        return Registered(workflow.name, version) if version is not None else workflow
    if isinstance(workflow, Workflow):
        if version is not None:
            raise ParameterError("version= names a version of a registered workflow",
                                 hint="pass the registered workflow's name, or leave version= out")
        return None
    parsed = parse(workflow)
    if parsed is None:
        if version is not None:
            raise ParameterError(f"{workflow[:80]!r} is a file or module, not a registered workflow: "
                                 "a version does not apply",
                                 hint="name a registered workflow (`skyweave workflows list`)")
        return None
    if version is not None or parsed.version is not None:
        return Registered(parsed.name, version or parsed.version)
    return parsed if store.list_workflows(parsed.name) else None
