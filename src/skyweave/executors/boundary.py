"""The one boundary around user code: every executor runs an activity through ``execute``.

``execute(dispatch, env)`` never raises for anything the task does.  It

1. sets the activity context (``skyweave.context()``; logger ``skyweave.activity.<task>``) with
   its work directory ``work_root/<activity_id>-<attempt>`` (made on first use of ``ctx.workdir``:
   creating and removing a directory costs ~0.5 ms on a journalled disk, more than the rest of
   this module, and most short tasks never write a file);
2. resolves the task (``module:qualname`` or ``/abs/path/file.py:qualname``; a decorated task
   object is unwrapped through its ``fn`` attribute) and binds its arguments: every
   ``{"$product": id}`` marker, however nested, becomes a ``Product`` with a local ``path``;
3. runs the aspects' ``before`` hooks, calls the task (or runs its command line), moves every
   ``Product`` it returned into storage (replaced by a ``{"$product": id}`` marker in the result),
   runs the ``after`` hooks in reverse;
4. reports one outcome: ``ActivityFinished``, ``ActivityNeedsInput`` (the task raised
   ``MissingInput``/``InsufficientInput`` or a command wrote ``skyweave-needs.json``) or
   ``ActivityFailed`` (retryable unless the error says otherwise, as ``Fatal`` does; the original
   type, message and traceback are kept).

The work directory is removed after a success and kept after a failure, for inspection.
Timeouts are enforced by the executors, which can stop a process; this module cannot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
import traceback
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

import msgspec

from skyweave.aspects.base import Aspect, AspectChain, AspectError, AspectOutcome, load_aspect, qualified_name
from skyweave.aspects.builtin import (
    InputValidationAspect,
    LogCaptureAspect,
    TimingAspect,
    activity_log_path,
)
from skyweave.errors import Fatal, SkyweaveError, TaskFailure
from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.command import run_command
from skyweave.executors.resolve import resolve_task
from skyweave.model.context import ActivityContext, reset_context, set_context
from skyweave.model.ids import PRODUCT, new_id
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    ActivityNeedsInput,
    DispatchActivity,
    InputNeed,
    NewProduct,
    ProductRef,
    Usage,
)
from skyweave.model.product import Product
from skyweave.model.signals import MissingInput
from skyweave.model.specs import TaskKind
from skyweave.storage.local import LocalStorage, file_uri

HOST = socket.gethostname()
MARKER = "$product"
_USAGE_FIELDS = frozenset(Usage.__struct_fields__)


def builtin_aspects(env: ExecutionEnv, *, exclusive_process: bool) -> list[Aspect]:
    """Log capture (outermost), timing, input validation."""
    return [
        LogCaptureAspect(env.log_root, capture_fds=exclusive_process),
        TimingAspect(per_thread=not exclusive_process),
        InputValidationAspect(validate_checksums=env.validate_checksums),
    ]


class _Context(ActivityContext):
    """An ``ActivityContext`` whose work directory is created when first asked for.

    Built with ``workdir=<work root>``; the directory is ``<work root>/<activity_id>-<attempt>``.
    """

    _root: Path
    _workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = self.workdir_path
            _make_dir(self._workdir)
        return self._workdir

    @workdir.setter
    def workdir(self, value: Path) -> None:
        self._root = value

    @property
    def workdir_path(self) -> Path:
        """Where the work directory is (or would be), without creating it."""
        return self._workdir or self._root / f"{self.activity_id}-{self.attempt}"

    @property
    def created(self) -> bool:
        return self._workdir is not None


class Boundary:
    """Runs activities for one ``ExecutionEnv``; holds what is worth keeping between activities.

    ``exclusive_process``: each activity has the process to itself (a process pool), so its
    ``print()`` and file-descriptor output can be captured and CPU time counted per process.
    """

    def __init__(self, env: ExecutionEnv, *, exclusive_process: bool = True) -> None:
        self.env = env
        self.storage = LocalStorage(env.storage_root)
        aspects = builtin_aspects(env, exclusive_process=exclusive_process) if env.builtin_aspects else []
        aspects += [load_aspect(ref) for ref in env.aspects]
        self.chain = AspectChain(aspects)
        self.pid = os.getpid()
        self._loggers: dict[str, logging.Logger] = {}

    def execute(self, dispatch: DispatchActivity) -> Outcome:
        started_at = time.time()
        clock = time.perf_counter()
        task = dispatch.task
        log = self._loggers.get(task.name)
        if log is None:
            log = self._loggers[task.name] = logging.getLogger(f"skyweave.activity.{task.name}")
        ctx = _Context(
            activity_id=dispatch.activity_id,
            run_id=dispatch.run_id,
            attempt=dispatch.attempt,
            task=task,
            workdir=self.env.work_root,
            log=log,
            obs_id=dispatch.obs_id,
        )
        command_log = None
        if task.kind is not TaskKind.PYTHON:
            command_log = activity_log_path(self.env.log_root, dispatch.activity_id, dispatch.attempt)
        entered: list[Aspect] = []
        """Aspects whose ``before`` ran; if one raised, the chain has already unwound them."""
        wrapped = False
        outcome = AspectOutcome(ok=False)
        token = set_context(ctx)
        try:
            try:
                function = resolve_task(task) if task.kind is TaskKind.PYTHON else None
                arguments = bind_arguments(dispatch.arguments, dispatch.products)
                ctx.extra["arguments"] = arguments
                self.chain.before(ctx, entered)
                wrapped = True
                if function is not None:
                    value = function(**arguments)
                    if asyncio.iscoroutine(value):
                        value = asyncio.run(value)
                else:
                    assert command_log is not None
                    value = run_command(ctx, arguments, command_log)
                result, products = self._store_products(dispatch, ctx.workdir_path, value)
                outcome = AspectOutcome(ok=True, result=result, products=products)
            except (Exception, SystemExit) as exc:
                outcome = AspectOutcome(ok=False, error=exc)
            if command_log is not None and command_log.exists():
                outcome.log_uri = file_uri(command_log)
            if wrapped:
                self.chain.after(ctx, entered, outcome)
        finally:
            reset_context(token)
        if outcome.ok and ctx.created:
            _remove_dir(ctx.workdir_path)
        return self._report(dispatch, outcome, entered, started_at=started_at, clock=clock)

    # -----------------------------------------------------------------------------------------

    def _store_products(
        self, dispatch: DispatchActivity, workdir: Path, value: Any
    ) -> tuple[Any, list[NewProduct]]:
        """Move returned products into storage; the result with markers in their place."""
        if value is None or isinstance(value, str | int | float | bool):
            return value, []
        task = dispatch.task
        found: list[tuple[str, Product]] = []
        result = _replace_products(value, found)
        result = to_json_like(result, task.name)
        names: dict[str, Product] = {}
        for _, product in found:
            path = product.local_path
            if not path.is_file():
                raise TaskFailure(
                    f"task {task.name!r} returned a product whose file does not exist: {path}",
                    error_type="skyweave.MissingOutput",
                    retryable=False,
                    hint="write the file before returning Product(path); use ctx.output(name) for a path",
                )
            name = path.relative_to(workdir).as_posix() if path.is_relative_to(workdir) else path.name
            if name in names:
                raise TaskFailure(
                    f"task {task.name!r} returned two products stored as {name!r}",
                    error_type="skyweave.DuplicateOutput",
                    retryable=False,
                    hint="give each product file a distinct name",
                )
            names[name] = product
        products = []
        for (product_id, product), stored_as in zip(found, names, strict=True):
            uri, checksum, size = self.storage.store_file(
                product.local_path, dispatch.run_id, dispatch.activity_id, stored_as
            )
            products.append(
                NewProduct(
                    id=product_id,
                    uri=uri,
                    name=product.name or product.local_path.name,
                    type=product.type,
                    checksum=checksum,
                    size=size,
                    obs_id=product.obs_id or dispatch.obs_id,
                    detector=product.detector,
                    version=product.version or task.version,
                    attributes=dict(product.attributes),
                )
            )
        return result, products

    def _report(
        self,
        dispatch: DispatchActivity,
        outcome: AspectOutcome,
        entered: list[Aspect],
        *,
        started_at: float,
        clock: float,
    ) -> Outcome:
        usage_values = {k: v for k, v in outcome.usage.items() if k in _USAGE_FIELDS}
        usage_values.setdefault("wall_s", time.perf_counter() - clock)
        aspects = [aspect.name for aspect in entered]
        if isinstance(outcome.error, AspectError) and outcome.error.aspect not in aspects:
            aspects.append(outcome.error.aspect)
        common: dict[str, Any] = {
            "activity_id": dispatch.activity_id,
            "attempt": dispatch.attempt,
            "worker": self.env.worker,
            "usage": Usage(**usage_values),
            "log_uri": outcome.log_uri,
            "aspects": aspects,
            "host": HOST,
            "pid": self.pid,
            "started_at": started_at,
            "at": time.time(),
        }
        if outcome.ok:
            return ActivityFinished(result=outcome.result, products=outcome.products, **common)
        error = outcome.error
        if isinstance(error, MissingInput):
            need = InputNeed(
                param=error.param,
                product_type=error.product_type,
                match=error.match,
                reason=error.reason,
                provider_params=error.provider_params,
                insufficient=error.insufficient,
            )
            return ActivityNeedsInput(need=need, **common)
        return ActivityFailed(**_describe_failure(error, dispatch.task.name), **common)


def _describe_failure(error: BaseException | None, task_name: str) -> dict[str, Any]:
    if error is None:
        return {"error_type": "skyweave.Unknown", "message": f"task {task_name!r} failed", "retryable": True}
    if isinstance(error, TaskFailure):
        return {
            "error_type": error.error_type,
            "message": str(error),
            "traceback": error.traceback or _user_traceback(error),
            "retryable": error.retryable,
            "exit_code": error.process_exit_code,
        }
    if isinstance(error, SystemExit):
        message = f"task {task_name!r} called sys.exit({error.code!r})"
    else:
        message = str(error) or repr(error)
    return {
        "error_type": qualified_name(type(error)),
        "message": message,
        "traceback": _user_traceback(error),
        "retryable": error.retryable if isinstance(error, SkyweaveError) else True,
    }


def _user_traceback(error: BaseException) -> str:
    """The traceback text, without this module's own frames at the top."""
    tb: TracebackType | None = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__ and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


# ---------------------------------------------------------------------------------------------
# arguments in, results out


def bind_arguments(arguments: dict[str, Any], products: dict[str, ProductRef]) -> dict[str, Any]:
    """The arguments with every ``{"$product": id}`` marker replaced by a ``Product``."""

    def bind(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and MARKER in value:
                return _input_product(value[MARKER], products)
            return {key: bind(item) for key, item in value.items()}
        if isinstance(value, list):
            return [bind(item) for item in value]
        return value

    return {name: bind(value) for name, value in arguments.items()}


def _input_product(product_id: str, products: dict[str, ProductRef]) -> Product:
    ref = products.get(product_id)
    if ref is None:
        raise Fatal(
            f"an argument refers to product {product_id!r} that the dispatch does not describe",
            hint="this is a controller bug: every product marker must come with its ProductRef",
        )
    path = LocalStorage.local_path(ref.uri)
    return Product(
        path,
        type=ref.type,
        obs_id=ref.obs_id,
        detector=ref.detector,
        version=ref.version,
        attributes=dict(ref.attributes),
        name=path.name,
        id=ref.id,
        uri=ref.uri,
        checksum=ref.checksum,
        size=ref.size,
    )


def _replace_products(value: Any, found: list[tuple[str, Product]]) -> Any:
    """``value`` with each new ``Product`` replaced by a marker; collects ``(new id, product)``."""
    if isinstance(value, Product):
        if value.id is not None and value.uri is not None:
            return {MARKER: value.id}  # an input passed through: already stored
        product_id = new_id(PRODUCT)
        found.append((product_id, value))
        return {MARKER: product_id}
    if isinstance(value, dict):
        return {key: _replace_products(item, found) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_products(item, found) for item in value]
    return value


def _enc_hook(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise NotImplementedError


_json = msgspec.json.Encoder(enc_hook=_enc_hook)


def to_json_like(value: Any, task_name: str) -> Any:
    """``value`` as plain JSON types (paths become strings, numpy values lists and numbers)."""
    try:
        return msgspec.json.decode(_json.encode(value))
    except (TypeError, NotImplementedError, msgspec.EncodeError) as exc:
        culprit = _unencodable(value) or type(value)
        raise TaskFailure(
            f"task {task_name!r} returned a value of type {culprit.__qualname__} that cannot be stored; "
            "return JSON-like values or Product objects",
            error_type="skyweave.UnstorableResult",
            retryable=False,
        ) from exc


def _unencodable(value: Any) -> type | None:
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        try:
            _json.encode(value)
        except (TypeError, NotImplementedError, msgspec.EncodeError):
            return type(value)
        return None
    for item in items:
        culprit = _unencodable(item)
        if culprit is not None:
            return culprit
    return None


def _make_dir(path: Path) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True)


def _remove_dir(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


_last: tuple[ExecutionEnv, bool, Boundary] | None = None


def execute(dispatch: DispatchActivity, env: ExecutionEnv, *, exclusive_process: bool = True) -> Outcome:
    """Run one activity; the ``Boundary`` for ``env`` is kept for the next call."""
    global _last  # noqa: PLW0603 - a one-entry cache: executors call this with the same env
    if _last is None or _last[0] is not env or _last[1] != exclusive_process:
        _last = (env, exclusive_process, Boundary(env, exclusive_process=exclusive_process))
    return _last[2].execute(dispatch)
