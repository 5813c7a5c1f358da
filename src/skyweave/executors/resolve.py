"""Find the function behind a Python task reference: ``module:qualname`` or ``/path/file.py:qualname``.

A file is loaded under a stable module name made from its path and a hash of its content
(``_skyweave_task_<stem>_<hash>``) and registered in ``sys.modules`` so that what it defines
pickles.  Resolutions are cached per task version (and code hash): registering a new version of a
task whose file was edited loads the new content under a new module name, without disturbing
activities of the old version.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from skyweave.authoring.interactive import MAIN_REF, REQUIRES, missing_package
from skyweave.errors import DefinitionError, SkyweaveError
from skyweave.model.specs import TaskSpec
from skyweave.storage import locate

_by_task: dict[tuple[str, str, str], Callable[..., Any]] = {}
_by_file: dict[tuple[str, int, int], ModuleType] = {}
_lock = threading.RLock()  # the threads executor resolves concurrently; a half-run module must not leak


def resolve_task(task: TaskSpec) -> Callable[..., Any]:
    """The function of a Python task, cached per (reference, version, code hash)."""
    key = (task.ref, task.version, task.code_hash)
    function = _by_task.get(key)
    if function is None:
        with _lock:
            function = _by_task.get(key)
            if function is None:
                function = _by_task[key] = resolve_ref(task.ref)
    return function


def use_import_path(directories: Iterable[str]) -> None:
    """Put ``directories`` at the front of ``sys.path`` (each once), as ``python -m`` does for the
    current directory: user modules named ``module:NAME`` in the settings (aspects, listeners,
    preload modules, tasks) are found there however skyweave was started (the ``skyweave`` script
    puts only its own directory on the path; a process pool's children inherit a copy of the path
    from when the pool's server started)."""
    for directory in reversed(list(directories)):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def preload(modules: Iterable[str]) -> list[str]:
    """Import ``modules`` now (a worker's start-up, see ``ExecutionEnv.preload``); what failed, one
    line each.  A failure is not fatal here: an activity that needs the module reports the import
    error itself when its task is resolved."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    return failed


def resolve_ref(ref: str) -> Callable[..., Any]:
    """The callable a task reference names (a decorated task is unwrapped via its ``fn``)."""
    target, _, qualname = ref.rpartition(":")
    if not target or not qualname:
        raise DefinitionError(
            f"task reference {ref!r} is not of the form 'module:function' or '/path/file.py:function'",
            hint="write e.g. 'mypkg.tasks:calibrate' or '/abs/path/tasks.py:calibrate'",
        )
    if target == MAIN_REF:
        raise DefinitionError(
            f"task reference {ref!r} names code defined in a notebook or prompt, which a worker "
            "cannot import", hint="register the task through skyweave.Client (it sends the code "
                                  "as a module assembled from the notebook's source)")
    from_file = target.endswith(".py") or "/" in target
    module = load_file(fetch_code(target) if "://" in target else Path(target)) if from_file \
        else _import(target, ref)
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise DefinitionError(
                f"task reference {ref!r}: {target} has no {qualname!r}",
                hint=f"callables there: {', '.join(public[:20]) or 'none'}",
            ) from None
    function = getattr(obj, "fn", obj)
    if not callable(function):
        raise DefinitionError(f"task reference {ref!r} names a {type(function).__name__}, not a function")
    return cast("Callable[..., Any]", function)


def fetch_code(uri: str) -> Path:
    """A local copy of a task file snapshotted in a storage (``Client`` puts each task version's
    file under ``code/<code hash>/`` of a remote storage), fetched once per host and URI."""
    folder = Path(tempfile.gettempdir()) / f"skyweave-code-{os.getuid()}"
    local = folder / hashlib.sha256(uri.encode()).hexdigest()[:24] / uri.rpartition("/")[2]
    if not local.is_file():
        # under a name of this process and thread: workers of one host fetch the same file at once
        fetching = local.with_name(f".{local.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            storage, key = locate(uri)
            storage.get(key, fetching)
            os.replace(fetching, local)
        except (OSError, SkyweaveError) as exc:
            fetching.unlink(missing_ok=True)
            raise DefinitionError(
                f"task file {uri} cannot be fetched: {getattr(exc, 'message', None) or exc}",
                hint="check that this worker can read the storage (same storage URL and credentials "
                     "as the client that registered the task)") from exc
    return local


def _import(name: str, ref: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DefinitionError(
            f"task reference {ref!r}: cannot import {name!r}: {exc}",
            hint="install the task's package on the worker (or use an absolute /path/file.py reference)",
        ) from exc


def load_file(path: Path) -> ModuleType:
    """The module of a Python file, loaded once per (path, content)."""
    path = path.absolute()
    try:
        stat = path.stat()
    except OSError as exc:
        raise DefinitionError(
            f"task file {path} cannot be read: {exc.strerror}",
            hint="task files must be visible at the same absolute path on every worker",
        ) from exc
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    module = _by_file.get(key)
    if module is not None:
        return module
    source = path.read_bytes()
    digest = hashlib.sha256(str(path).encode() + b"\0" + source).hexdigest()[:16]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_skyweave_task_{stem}_{digest}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise DefinitionError(f"task file {path} is not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as exc:
            del sys.modules[name]
            what, how = missing_package(exc, getattr(module, REQUIRES, None))
            raise DefinitionError(f"task file {path} needs {what}, which is not installed on this "
                                  f"worker ({socket.gethostname()}, Python {sys.executable})",
                                  hint=how) from exc
        except BaseException as exc:
            del sys.modules[name]
            raise DefinitionError(
                f"task file {path} failed to load: {type(exc).__name__}: {exc}",
                hint="fix the error in the file (its traceback is attached)",
            ) from exc
    _by_file[key] = module
    return module
