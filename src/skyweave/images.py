"""Container images of task versions, at registration: pinned to their content digest, and a
registered task given a new image (``skyweave tasks register NAME --image IMAGE --version V``)."""

from __future__ import annotations

import msgspec

from skyweave.authoring.loader import load_task
from skyweave.authoring.task import Task
from skyweave.config.settings import Settings
from skyweave.errors import DefinitionError, NotFoundError
from skyweave.executors import executor_key
from skyweave.executors.containers import ENGINES, ContainerError, ContainerRuntime, pin_image
from skyweave.model.specs import TaskKind, TaskSpec


def pinned(task: Task, settings: Settings) -> Task:
    """``task`` with its image's digest pinned (``containers.pin_image``) through the container
    engine of the settings (the executor setting when it is a container one, else ``container``);
    a task without image, or already pinned, as it is."""
    if not task.spec.image or task.spec.image_digest:
        return task
    setting = settings.executor if executor_key(settings.executor) in ENGINES else settings.container
    try:
        spec = pin_image(task.spec, ContainerRuntime.parse(setting))
    except ContainerError as exc:
        raise DefinitionError(f"task {task.spec.name!r}: {exc.message}", hint=exc.hint,
                              task=task.spec.name, image=task.spec.image) from exc
    return task.with_spec(spec)


def with_image(task: Task | str, image: str, version: str | None, current: TaskSpec | None) -> Task:
    """A new version of ``task`` that runs in ``image``: ``task`` is a ``Task``, ``PATH.py:TASK``,
    or the name of a registered task whose ``current`` version is the rest of the new one."""
    if version is None:
        raise DefinitionError("a task registered with a new image needs a version",
                              hint="add --version V (version=...): the label its products carry")
    if isinstance(task, str) and ":" not in task:
        if current is None:
            raise NotFoundError(f"no task named {task!r} is registered",
                                hint="`skyweave tasks list` shows them; or give PATH.py:TASK")
        base, fn = current, None
    else:
        obj = load_task(task) if isinstance(task, str) else task
        base, fn = obj.spec, obj.fn
    kind = TaskKind.IMAGE if base.kind is TaskKind.COMMAND else base.kind
    return Task(msgspec.structs.replace(base, image=image, image_digest="", kind=kind, version=version), fn)
