"""Which version of a submitted task will run, and when to say it is not the file's.

Submitting a workflow registers the task versions the registry has never seen and makes them
current; a version already registered keeps the routing as it is (so a ``skyweave tasks register``
switch-over is not undone by the next submission).  Two cases then surprise users, and
``routing_warnings`` names both sides of each:

* the file's version is registered but another version is current: an unpinned run uses the
  current one, not the code in the file;
* the file's task is of another kind than the one current under its name (a YAML command task
  ``calibrate`` and a Python ``@task`` ``calibrate``): whichever was submitted last wins for
  every run.
"""

from __future__ import annotations

from collections.abc import Mapping

from skyweave.model.specs import TaskKind, TaskSpec


def routing_warnings(submitted: Mapping[str, TaskSpec], before: Mapping[str, TaskSpec],
                     after: Mapping[str, TaskSpec], *, pinned: bool) -> list[str]:
    """Messages for the tasks of a submission; ``before``/``after``: the current version of each
    task name before and after the submission registered its new versions."""
    messages = []
    for name, spec in submitted.items():
        current, previous = after.get(name), before.get(name)
        if current is None:
            continue
        if current.version != spec.version and not pinned:
            again = (f"`skyweave tasks register {spec.ref}`" if spec.kind is TaskKind.PYTHON
                     else "register it again")
            messages.append(
                f"task {name!r}: the submitted workflow defines version {spec.version!r} ({_what(spec)}), "
                f"but this run uses version {current.version!r} ({_what(current)}), the current one: "
                f"a version already registered does not take the routing back. To run "
                f"{spec.version!r}, make it current ({again}) or pin the run (@workflow(pin=True))")
        elif previous is not None and previous.kind != spec.kind and previous.version != spec.version:
            messages.append(
                f"task {name!r}: version {spec.version!r} of this submission ({_what(spec)}) replaces "
                f"version {previous.version!r} ({_what(previous)}) as the current {name!r}: new "
                f"activations of {name!r} in every run use it. If they are different tasks, "
                "give them different names")
    return messages


def _what(spec: TaskSpec) -> str:
    if spec.kind is TaskKind.PYTHON:
        return f"Python task {spec.ref}"
    return f"{spec.kind.value} task `{spec.ref}`"
