"""Command-line tasks: render the argument template, run it without a shell, read what it left.

The template (``TaskSpec.ref``) may use ``{params.NAME}`` (a parameter value; a list becomes
several arguments), ``{inputs.NAME}`` (the local path of a product argument), ``{outputs.NAME}``
(the path of a declared output inside the work directory, from ``TaskSpec.outputs[NAME].path``,
itself a template) and ``{workdir}``.  Values are substituted shell-quoted, then the line is split
with ``shlex``, so a path with spaces stays one argument and nothing is ever run by a shell.

Literal braces: ``{{`` and ``}}`` stand for ``{`` and ``}`` (``awk '{{print $1}}'`` runs
``awk '{print $1}'``); any other brace is passed on as written.

The rendered command line (``shlex.join`` of the argument vector) and the exit status, 0
included, are recorded on the activity (``command``, ``exit_code``) and in its provenance.

A command reports a missing input by writing ``skyweave-needs.json`` in its work directory:
``{"param": …, "product_type": …, "match": {…}, "reason": …, "provider_params": {…}}``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from skyweave.errors import Fatal, TaskFailure
from skyweave.executors.base import RUN_IMAGE_YOURSELF, ExecutionEnv, unrunnable
from skyweave.model.context import ActivityContext
from skyweave.model.messages import InputNeed
from skyweave.model.product import Product
from skyweave.model.signals import InsufficientInput, MissingInput

NEEDS_FILE = "skyweave-needs.json"
_NO_CONTAINERS = ExecutionEnv(worker="", storage_root=Path(), work_root=Path(), log_root=Path())
STDERR_TAIL_LINES = 20

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(?:(params|inputs|outputs)\.([A-Za-z_]\w*)|(workdir))\}")
"""A placeholder, or a doubled brace (a literal one)."""


@dataclass
class CommandRun:
    """What ran, filled in by ``run_command`` as it goes (also when it raises)."""

    line: str = ""
    """The rendered command line: ``shlex.join`` of the argument vector."""
    exit_code: int | None = None
    image_digest: str = ""
    """The content digest of the image the command ran in (a task with an image)."""


def _scalar(value: Any) -> str:
    if isinstance(value, Product):
        return str(value.path)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict):
        return msgspec.json.encode(value).decode()
    return str(value)


def _render(template: str, ctx: ActivityContext, arguments: dict[str, Any], *, quote: bool) -> str:
    task = ctx.task

    def words(values: list[str]) -> str:
        return " ".join(shlex.quote(v) for v in values) if quote else " ".join(values)

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        section, name, workdir = match.groups()
        if workdir:
            return words([str(ctx.workdir)])
        if section == "outputs":
            if not quote:
                raise Fatal(f"output path of task {task.name!r} refers to {match.group(0)}")
            return words([str(output_path(ctx, arguments, name))])
        if name not in arguments:
            raise Fatal(
                f"command template of task {task.name!r} uses {match.group(0)} but no argument "
                f"{name!r} is bound (bound: {', '.join(sorted(arguments)) or 'none'})",
                hint="declare and pass that parameter, or fix the template",
            )
        value = arguments[name]
        items = list(value) if isinstance(value, list | tuple) else [value]
        if section == "inputs" and not all(isinstance(item, Product) for item in items):
            raise Fatal(
                f"{match.group(0)} in the command of task {task.name!r} needs a product, "
                f"got {type(value).__name__}",
                hint=f"use {{params.{name}}} for plain values",
            )
        return words([_scalar(item) for item in items])

    return _PLACEHOLDER.sub(substitute, template)


def output_path(ctx: ActivityContext, arguments: dict[str, Any], name: str) -> Path:
    """Where declared output ``name`` is written: its templated path, relative to the workdir."""
    spec = ctx.task.outputs.get(name)
    if spec is None:
        raise Fatal(
            f"command template of task {ctx.task.name!r} uses {{outputs.{name}}} but the task "
            f"declares no such output (declared: {', '.join(sorted(ctx.task.outputs)) or 'none'})",
            hint="declare it in the task's outputs",
        )
    path = ctx.workdir / _render(spec.path, ctx, arguments, quote=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def command_line(ctx: ActivityContext, arguments: dict[str, Any]) -> list[str]:
    """The argument vector for this activity."""
    argv = shlex.split(_render(ctx.task.ref, ctx, arguments, quote=True))
    if not argv:
        raise Fatal(f"task {ctx.task.name!r} has an empty command", hint="set the task's command template")
    return argv


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}"


def run_command(ctx: ActivityContext, arguments: dict[str, Any], log_path: Path,
                ran: CommandRun | None = None, *, env: ExecutionEnv | None = None) -> dict[str, Product]:
    """Run the command; its stdout and stderr go to ``log_path``; ``ran`` gets the command line
    and the exit status as soon as they are known.  A task with an image runs its command in a
    container of that image (``env.container`` names the engine; ``executors/containers.py``),
    its work directory and input products mounted at their own paths.

    Returns the declared outputs as products.  Raises ``MissingInput`` when the command wrote a
    needs file, ``TaskFailure`` on a non-zero exit (with the tail of stderr) or a missing output.
    """
    task = ctx.task
    ran = ran if ran is not None else CommandRun()
    refused = unrunnable(task, env) if env is not None else unrunnable(task, _NO_CONTAINERS)
    if refused:
        raise TaskFailure(refused, error_type="skyweave.ContainerUnsupported", retryable=False,
                          hint=RUN_IMAGE_YOURSELF)
    argv = command_line(ctx, arguments)
    ran.line = shlex.join(argv)
    outputs = {name: output_path(ctx, arguments, name) for name in task.outputs}
    own = {"SKYWEAVE_ACTIVITY_ID": ctx.activity_id, "SKYWEAVE_RUN_ID": ctx.run_id,
           "SKYWEAVE_ATTEMPT": str(ctx.attempt), "SKYWEAVE_WORKDIR": str(ctx.workdir)}
    environment = dict(os.environ, **own)
    if task.image and env is not None and env.container:
        argv = in_container(env.container, ctx, arguments, argv, own, ran=ran)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[bytes] = deque(maxlen=STDERR_TAIL_LINES)
    with open(log_path, "ab", buffering=0) as log:
        try:
            process = subprocess.Popen(
                argv, cwd=ctx.workdir, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise TaskFailure(
                f"task {task.name!r} cannot start {argv[0]!r}: {exc.strerror}",
                error_type=type(exc).__name__,
                retryable=False,
                hint="install the program on the worker or put it on PATH",
            ) from exc
        with process:
            assert process.stderr is not None
            for line in process.stderr:
                log.write(line)
                tail.append(line)
            code = process.wait()
    ran.exit_code = code
    need = read_needs(ctx.workdir / NEEDS_FILE, task.name)
    if need is not None:
        signal_type = InsufficientInput if need.insufficient else MissingInput
        raise signal_type(
            need.param, need.product_type, match=need.match, reason=need.reason,
            provider_params=need.provider_params,
        )
    if code != 0:
        stderr = b"".join(tail).decode("utf-8", "backslashreplace").rstrip()
        raise TaskFailure(
            f"command of task {task.name!r} {_describe_exit(code)}"
            + (f"; last lines of stderr:\n{stderr}" if stderr else " (stderr was empty)"),
            error_type="skyweave.CommandFailed",
            exit_code=code,
            retryable=True,
        )
    products: dict[str, Product] = {}
    for name, path in outputs.items():
        if not path.is_file():
            raise TaskFailure(
                f"task {task.name!r} declares output {name!r} at {path}, but the command did not write it",
                error_type="skyweave.MissingOutput",
                retryable=False,
                hint="check the command writes {outputs." + name + "} or fix the declared path",
            )
        products[name] = Product(path, type=task.outputs[name].type, name=name)
    return products


def in_container(setting: str, ctx: ActivityContext, arguments: dict[str, Any], argv: list[str],
                 environment: dict[str, str], *, ran: CommandRun | None = None) -> list[str]:
    """``argv`` run in the task's image (by digest, which ``ran`` gets) with the work directory and
    the input products mounted at their own paths."""
    from skyweave.executors.containers import ContainerError, ContainerRuntime, container_name

    task = ctx.task
    assert task.image is not None
    runtime = ContainerRuntime.parse(setting)
    try:
        image = task.image_digest or runtime.digest(task.image)
    except ContainerError as exc:
        raise TaskFailure(exc.message, error_type="skyweave.ImageMissing", retryable=False,
                          hint=exc.hint) from exc
    if ran is not None:
        ran.image_digest = image
    inputs = [item.path for value in arguments.values()
              for item in (value if isinstance(value, list | tuple) else [value])
              if isinstance(item, Product)]
    mounts = [(str(ctx.workdir), False), *((str(Path(p).resolve()), True) for p in inputs)]
    return runtime.run_argv(container_name(ctx.activity_id, ctx.attempt), image, argv, mounts=mounts,
                            resources=task.resources, workdir=str(ctx.workdir), env=environment,
                            remove=True)


def read_needs(path: Path, task_name: str) -> InputNeed | None:
    """The input need a command reported in its needs file, if it wrote one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=InputNeed)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Fatal(
            f"task {task_name!r} wrote a malformed {NEEDS_FILE}: {exc}",
            hint='write {"param": "...", "product_type": "...", "match": {}, "reason": "..."}',
        ) from exc
