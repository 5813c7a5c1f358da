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
from pathlib import Path
from types import TracebackType
from typing import Any

from skyweave.aspects.base import (
    Aspect,
    AspectChain,
    AspectError,
    AspectOutcome,
    load_aspect,
    qualified_name,
    usage_from,
)
from skyweave.aspects.builtin import (
    InputValidationAspect,
    LogCaptureAspect,
    TimingAspect,
    activity_log_path,
)
from skyweave.errors import SkyweaveError, TaskFailure
from skyweave.executors.base import RUN_IMAGE_YOURSELF, ExecutionEnv, Outcome, unrunnable
from skyweave.executors.command import CommandRun, run_command
from skyweave.executors.products import INPUTS, bind_arguments, provider_params, store_products
from skyweave.executors.resolve import resolve_task, use_import_path
from skyweave.model.context import ActivityContext, reset_context, set_context
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    ActivityNeedsInput,
    DispatchActivity,
    InputNeed,
)
from skyweave.model.signals import MissingInput
from skyweave.model.specs import TaskKind
from skyweave.storage import LocalStorage, open_storage
from skyweave.storage.local import file_uri

HOST = socket.gethostname()


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
        use_import_path(env.import_path)
        self.storage = open_storage(env.storage).within("products") if env.storage else \
            open_storage(env.storage_root)
        self.logs = open_storage(env.storage).within("logs") if env.storage else None
        aspects = builtin_aspects(env, exclusive_process=exclusive_process) if env.builtin_aspects else []
        aspects += [load_aspect(ref, env.aspect_settings) for ref in env.aspects]
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
        ran = CommandRun()
        if task.kind is not TaskKind.PYTHON:
            command_log = activity_log_path(self.env.log_root, dispatch.activity_id, dispatch.attempt)
        entered: list[Aspect] = []
        """Aspects whose ``before`` ran; if one raised, the chain has already unwound them."""
        wrapped = False
        outcome = AspectOutcome(ok=False)
        token = set_context(ctx)
        try:
            try:
                refused = unrunnable(task, self.env)
                if refused:
                    raise TaskFailure(refused, error_type="skyweave.ContainerUnsupported",
                                      retryable=False, hint=RUN_IMAGE_YOURSELF)
                function = resolve_task(task) if task.kind is TaskKind.PYTHON else None
                arguments = bind_arguments(dispatch.arguments, dispatch.products,
                                           stage_in=lambda: ctx.workdir / INPUTS)
                ctx.extra["arguments"] = arguments
                self.chain.before(ctx, entered)
                wrapped = True
                if function is not None:
                    value = function(**arguments)
                    if asyncio.iscoroutine(value):
                        value = asyncio.run(value)
                else:
                    assert command_log is not None
                    value = run_command(ctx, arguments, command_log, ran, env=self.env)
                result, products = store_products(self.storage, dispatch, ctx.workdir_path, value)
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
        return self._report(dispatch, outcome, entered, ran, started_at=started_at, clock=clock)

    # -----------------------------------------------------------------------------------------

    def _log_to_storage(self, dispatch: DispatchActivity, log_uri: str) -> str:
        """The captured log copied to ``logs/<activity_id>.<attempt>.log`` in a storage that is
        not a local folder (readable where the worker's disk is not); its URI, or the local one
        if the copy failed (said in the worker's log)."""
        key = f"{dispatch.activity_id}.{dispatch.attempt}.log"
        try:
            assert self.logs is not None
            return self.logs.put_file(LocalStorage.local_path(log_uri), key).uri
        except (OSError, SkyweaveError) as exc:
            logging.getLogger(__name__).warning("log of %s kept on this host only: %s",
                                                dispatch.activity_id, exc)
            return log_uri

    def _report(
        self,
        dispatch: DispatchActivity,
        outcome: AspectOutcome,
        entered: list[Aspect],
        ran: CommandRun,
        *,
        started_at: float,
        clock: float,
    ) -> Outcome:
        outcome.usage.setdefault("wall_s", time.perf_counter() - clock)
        if outcome.log_uri and self.logs is not None and not isinstance(self.logs, LocalStorage):
            outcome.log_uri = self._log_to_storage(dispatch, outcome.log_uri)
        usage, problems = usage_from(outcome.usage)
        if problems and outcome.ok:
            outcome.ok, outcome.result = False, None
            outcome.error = TaskFailure(
                f"the aspects' usage figures cannot be recorded: {'; '.join(problems)}",
                error_type="skyweave.InvalidUsage", retryable=False,
                hint="in the aspect that sets them, convert the values (len(...), str(...), float(...))")
        aspects = [aspect.name for aspect in entered]
        if isinstance(outcome.error, AspectError) and outcome.error.aspect not in aspects:
            aspects.append(outcome.error.aspect)
        common: dict[str, Any] = {
            "activity_id": dispatch.activity_id,
            "attempt": dispatch.attempt,
            "worker": self.env.worker,
            "usage": usage,
            "log_uri": outcome.log_uri,
            "aspects": aspects,
            "host": HOST,
            "pid": self.pid,
            "started_at": started_at,
            "at": time.time(),
            "command": ran.line,
            "image_digest": ran.image_digest,
        }
        if ran.exit_code is not None:
            common["exit_code"] = ran.exit_code
        if outcome.ok:
            return ActivityFinished(result=outcome.result, products=outcome.products, **common)
        error = outcome.error
        if isinstance(error, MissingInput):
            try:
                params = provider_params(error.provider_params, dispatch.task.name)
            except TaskFailure as exc:
                return ActivityFailed(**{**_describe_failure(exc, dispatch.task.name), **common})
            need = InputNeed(
                param=error.param,
                product_type=error.product_type,
                match=error.match,
                reason=error.reason,
                provider_params=params,
                insufficient=error.insufficient,
            )
            return ActivityNeedsInput(need=need, **common)
        return ActivityFailed(**{**_describe_failure(error, dispatch.task.name), **common})


def _describe_failure(error: BaseException | None, task_name: str) -> dict[str, Any]:
    if error is None:
        return {"error_type": "skyweave.Unknown", "message": f"task {task_name!r} failed", "retryable": True}
    if isinstance(error, TaskFailure):
        return {
            "error_type": error.error_type,
            "message": str(error),
            "traceback": error.traceback,  # raised by skyweave itself: its frames are noise to the user
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
