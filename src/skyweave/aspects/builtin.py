"""The built-in aspects every worker runs (unless ``ExecutionEnv.builtin_aspects`` is off).

* ``LogCaptureAspect`` — the activity's log: the ``ctx.log`` logger and, when the activity owns its
  process, ``print()`` output and everything written to file descriptors 1 and 2 by C code and
  subprocesses.  Goes to ``log_root/<activity_id>.<attempt>.log``; an activity that writes
  nothing gets no file (and no cost beyond a few system calls).
* ``TimingAspect`` — wall time, CPU user/system time and peak memory (``Usage``).
* ``InputValidationAspect`` — input products exist (and match their checksum) and parameter values
  have their declared types; refuses the activity, not retryably, otherwise.
"""

from __future__ import annotations

import io
import logging
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TextIO

from skyweave.aspects.base import Aspect, AspectOutcome
from skyweave.errors import Fatal
from skyweave.model.context import ActivityContext
from skyweave.model.product import Product
from skyweave.model.specs import TaskKind
from skyweave.storage import inplace
from skyweave.storage.local import checksum_unchanged, file_uri, known_checksum

ACTIVITY_LOGGER = "skyweave.activity"
"""Parent of every activity's logger (``skyweave.activity.<task>``); not propagated further."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def activity_log_path(log_root: Path, activity_id: str, attempt: int) -> Path:
    return log_root / f"{activity_id}.{attempt}.log"


# ---------------------------------------------------------------------------------------------
# log capture


class _Sink(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class _LazyFile:
    """A text sink that creates its file on the first write (no file for silent activities)."""

    def __init__(self, log_root: Path, activity_id: str, attempt: int) -> None:
        self._where = (log_root, activity_id, attempt)
        self.path: Path | None = None
        self._file: TextIO | None = None

    def write(self, text: str) -> int:
        if self._file is None:
            self.path = activity_log_path(*self._where)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        return self._file.write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def capture_scratch_path(log_root: Path, pid: int) -> Path:
    """The scratch file where process ``pid`` captures the output of the activity it runs."""
    return log_root / f".capture-{pid}"


def salvage_capture(log_root: Path, pid: int, activity_id: str, attempt: int) -> Path | None:
    """After process ``pid`` was stopped or died mid-activity: move what it had captured into the
    activity's log (returned, if there was anything) and remove its scratch file."""
    scratch = capture_scratch_path(log_root, pid)
    try:
        data = scratch.read_bytes()
        scratch.unlink()
    except FileNotFoundError:
        return None
    if not data:
        return None
    log_path = activity_log_path(log_root, activity_id, attempt)
    with open(log_path, "ab") as log:
        log.write(data)
    return log_path


class _FdCapture:
    """Points fds 1 and 2 (and ``sys.stdout``/``sys.stderr``) at one scratch file per process.

    Reusing the scratch file keeps a silent activity free of file creation: after the activity,
    non-empty scratch content is copied to the activity's log and the scratch truncated.  The
    scratch is a named file (``capture_scratch_path``) so that when the process is killed (a
    timeout) or crashes, the executor can still put the output in the activity's log.
    """

    def __init__(self, path: Path) -> None:
        self.pid = os.getpid()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.text = io.TextIOWrapper(
            open(self.fd, "wb", closefd=False),  # noqa: SIM115 - owned by the wrapper
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
        self.saved: tuple[int, int, Any, Any] | None = None

    def close(self) -> None:
        self.text.close()
        os.close(self.fd)
        self.path.unlink(missing_ok=True)

    def begin(self) -> TextIO:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        self.saved = (os.dup(1), os.dup(2), sys.stdout, sys.stderr)
        os.dup2(self.fd, 1)
        os.dup2(self.fd, 2)
        sys.stdout = sys.stderr = self.text
        return self.text

    def end(self, log_root: Path, activity_id: str, attempt: int) -> Path | None:
        """Restore fds 1/2; append what was captured to the activity's log (its path, if any)."""
        assert self.saved is not None
        self.text.flush()
        out, err, sys.stdout, sys.stderr = self.saved
        self.saved = None
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        if not os.fstat(self.fd).st_size:
            return None
        log_path = activity_log_path(log_root, activity_id, attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            os.lseek(self.fd, 0, os.SEEK_SET)
            while chunk := os.read(self.fd, 1 << 20):
                log.write(chunk)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        return log_path


_fd_capture: _FdCapture | None = None
_sink: ContextVar[_Sink | None] = ContextVar("skyweave_activity_log", default=None)


class _RoutingHandler(logging.Handler):
    """Sends each record of an activity logger to the log of the activity running in this context."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink.get()
        if sink is None:  # not inside a captured activity: behave like unconfigured logging
            last = logging.lastResort
            if last is not None and record.levelno >= last.level:
                last.handle(record)
            return
        try:
            sink.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _install_routing_handler() -> None:
    parent = logging.getLogger(ACTIVITY_LOGGER)
    if any(isinstance(h, _RoutingHandler) for h in parent.handlers):
        return
    handler = _RoutingHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    parent.addHandler(handler)
    parent.propagate = False
    if parent.level == logging.NOTSET:
        parent.setLevel(logging.INFO)


class LogCaptureAspect(Aspect):
    """Captures the activity's output into ``log_root/<activity_id>.<attempt>.log``.

    With ``capture_fds`` (the activity owns its process, as in the local process pool) this takes
    ``print()``, C-level writes to fds 1/2 and subprocess output as well as ``ctx.log``.  Without it
    (threads share one process, so redirecting fds or ``sys.stdout`` is not safe) only ``ctx.log``.
    """

    name = "log-capture"

    def __init__(self, log_root: Path, *, capture_fds: bool = True) -> None:
        self.log_root = Path(log_root)
        self.capture_fds = capture_fds
        _install_routing_handler()

    def before(self, ctx: ActivityContext) -> None:
        global _fd_capture  # noqa: PLW0603 - one scratch file per process, created on first use
        sink: _Sink
        if self.capture_fds:
            scratch = capture_scratch_path(self.log_root, os.getpid())
            if _fd_capture is None or _fd_capture.pid != os.getpid() or _fd_capture.path != scratch:
                if _fd_capture is not None and _fd_capture.pid == os.getpid():
                    _fd_capture.close()
                _fd_capture = _FdCapture(scratch)
            sink = _fd_capture.begin()
        else:
            sink = _LazyFile(self.log_root, ctx.activity_id, ctx.attempt)
        ctx.extra[self.name] = _sink.set(sink)

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        token = ctx.extra.pop(self.name)
        sink = _sink.get()
        _sink.reset(token)
        written: Path | None = None
        if self.capture_fds:
            assert _fd_capture is not None
            written = _fd_capture.end(self.log_root, ctx.activity_id, ctx.attempt)
        elif isinstance(sink, _LazyFile):
            sink.close()
            written = sink.path
        if written is not None:
            outcome.log_uri = file_uri(written)


# ---------------------------------------------------------------------------------------------
# timing


class TimingAspect(Aspect):
    """Wall time, CPU time (``getrusage`` deltas) and peak RSS into ``outcome.usage``.

    Python tasks count this process's CPU (this thread's with ``per_thread``, for the thread
    executor); command tasks count waited-for children.  ``max_rss_kb`` is the peak of the process
    (or of the largest child) so far: a reused worker process reports an upper bound.
    """

    name = "timing"

    def __init__(self, *, per_thread: bool = False) -> None:
        self.who = resource.RUSAGE_THREAD if per_thread and hasattr(resource, "RUSAGE_THREAD") else (
            resource.RUSAGE_SELF
        )

    def before(self, ctx: ActivityContext) -> None:
        command = ctx.task.kind is not TaskKind.PYTHON
        ctx.extra[self.name] = (
            time.perf_counter(),
            resource.getrusage(self.who),
            resource.getrusage(resource.RUSAGE_CHILDREN) if command else None,
        )

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        started, own_before, children_before = ctx.extra.pop(self.name)
        own = resource.getrusage(self.who)
        user = own.ru_utime - own_before.ru_utime
        system = own.ru_stime - own_before.ru_stime
        rss = own.ru_maxrss
        if children_before is not None:
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            user += children.ru_utime - children_before.ru_utime
            system += children.ru_stime - children_before.ru_stime
            rss = children.ru_maxrss
        outcome.usage.update(
            wall_s=time.perf_counter() - started, cpu_user_s=user, cpu_system_s=system, max_rss_kb=rss
        )


# ---------------------------------------------------------------------------------------------
# input validation


class InvalidInput(Fatal):
    """An activity's inputs do not match what its task declares; retrying cannot help."""


def iter_products(value: Any) -> Iterator[Product]:
    """Every ``Product`` in a value, looking inside lists, tuples and dicts."""
    if isinstance(value, Product):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_products(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_products(item)


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "Product": (Product,),
    "list": (list, tuple),
    "dict": (dict,),
}


def _matches(type_name: str, value: Any) -> bool:
    if type_name.endswith("?"):  # Optional[X]: None is fine
        if value is None:
            return True
        type_name = type_name[:-1]
    accepted = _TYPE_CHECKS.get(type_name)
    if accepted is None:  # "any", or a type name this check does not know
        return True
    if isinstance(value, bool) and bool not in accepted:
        return False
    return isinstance(value, accepted)


class InputValidationAspect(Aspect):
    """Refuses an activity whose parameters or input products are not what its task declares."""

    name = "validate-inputs"

    def __init__(self, *, validate_checksums: bool = True) -> None:
        self.validate_checksums = validate_checksums

    def before(self, ctx: ActivityContext) -> None:
        arguments: dict[str, Any] = ctx.extra.get("arguments", {})
        task = ctx.task
        for param, type_name in task.parameters.items():
            if param not in arguments:
                continue
            value = arguments[param]
            if value is None and param in task.defaults and task.defaults[param] is None:
                continue
            if not _matches(type_name, value):
                raise InvalidInput(
                    f"parameter {param!r} of task {task.name!r} expects {type_name}, "
                    f"got {type(value).__name__} ({_preview(value)})",
                    hint=f"pass a {type_name} for {param!r}, or fix the declared type of the task",
                )
        for param, value in arguments.items():
            for product in iter_products(value):
                self._check_product(param, product)

    def _check_product(self, param: str, product: Product) -> None:
        path = product.local_path
        label = f"input product {product.id or path.name} (parameter {param!r})"
        if inplace.is_in_place(product.attributes):
            problem = inplace.change(product.uri or file_uri(path), product.checksum, product.attributes) \
                if self.validate_checksums else ("" if path.exists() else f"{path} is gone")
            if problem:
                raise InvalidInput(f"{label}: {problem}",
                                   hint="it changed after the run was submitted; submit the run again "
                                        "so that its results follow the new content")
            return
        if not path.is_file():
            raise InvalidInput(
                f"{label} is missing: no file at {path}",
                hint="the file was moved or deleted from storage; restore it or re-run its producer",
            )
        if self.validate_checksums and product.checksum:
            if known_checksum(path, path.stat()) == product.checksum:
                return  # hashed by this process (stored or validated) and not touched since
            actual, _ = checksum_unchanged(path)
            if actual != product.checksum:
                raise InvalidInput(
                    f"{label} at {path} does not match its recorded checksum: "
                    f"expected {product.checksum}, got {actual}",
                    hint="the file changed after it was registered; re-run its producer or re-register it",
                )


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
