"""``ContainerExecutor`` (``docker``, ``podman``, or either as ``docker://?options``): each activity
in a container of its own.

* A Python task runs ``python -m skyweave.execute JOB`` inside its image (``@task(image=…)``,
  pinned by digest at registration) or, without one, inside the setting's ``image=``: the image
  must have skyweave (``docker/skyweave.Dockerfile``).  The job's storage, work and log folders,
  the input products, the task's code folder and ``import_path`` are mounted at their own paths,
  so the job file is the same as on the host and products land in the same storage.
* A command task with an image (``command(image=…)``, YAML ``image:``) runs its own command in the
  image — no Python needed there — launched by a ``skyweave.execute`` process on this host that
  renders the command, mounts the work directory and inputs, and collects the declared outputs
  (``executors/command.py``, ``in_container``).  A command task without an image runs on the host.

Resources map to ``--cpus``, ``--memory`` (the executor stops a container over ``memory_mb``
itself, from its cgroup; the kernel's limit is a little higher, a backstop) and ``--gpus``.  Logs
are captured by the boundary inside the container (Python) or from the command's output (command
tasks); the exit status is recorded.  Timeouts, cancel and ``close`` remove the container
(``docker rm -f``) as well as its client process.  Containers are named
``skyweave-<activity>-<attempt>`` and removed once their outcome is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import shutil
import threading
from pathlib import Path

from skyweave.errors import SkyweaveError
from skyweave.executors.base import Capabilities, ExecutionEnv
from skyweave.executors.containers import (
    ContainerError,
    ContainerRuntime,
    cgroup_memory_bytes,
    container_name,
    kernel_memory_mb,
)
from skyweave.executors.guard import guard_argv
from skyweave.executors.limits import over_memory
from skyweave.executors.per_process import SubprocessExecutor, _Running
from skyweave.model.messages import ActivityFailed, DispatchActivity
from skyweave.model.specs import TaskKind
from skyweave.storage.local import LocalStorage

EXIT_ENGINE = (125, 126, 127)
"""``docker run``'s own failures: the daemon refused, the command cannot be invoked or found."""
OOM_EXIT = 137


class ContainerExecutor(SubprocessExecutor):
    """Up to ``processes`` containers at once."""

    capabilities = Capabilities(stops_running_work=True, enforces_memory=True)
    lifeline = True  # each container's launcher runs under a guard that removes it if the worker dies

    def __init__(self, setting: str, env: ExecutionEnv, *, processes: int | None = None) -> None:
        self.runtime = ContainerRuntime.parse(setting)
        self.name = self.runtime.engine
        super().__init__(dataclasses.replace(env, container=setting), processes=processes)
        self._digests: dict[str, str] = {}
        self._unrunnable: dict[str, ContainerError] = {}
        self._removals: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._remover: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        if self._remover is None:
            self._remover = threading.Thread(target=self._remove_loop, name="container-remover", daemon=True)
            self._remover.start()

    def image_of(self, dispatch: DispatchActivity) -> str:
        """The image id a Python activity runs in: its pinned digest, else its image's or the
        default image's digest now."""
        task = dispatch.task
        if task.image_digest:
            return task.image_digest
        image = task.image or self.runtime.image
        if not image:
            raise ContainerError(
                f"task {task.name!r} names no image and the {self.name} executor has no default image",
                hint=f"give the task image=, or the executor one: {self.name}://?image=skyweave:local")
        if image not in self._digests:
            self._digests[image] = self.runtime.digest(image)
        return self._digests[image]

    def _image_digest(self, dispatch: DispatchActivity) -> str:
        """A Python activity's image (``image_of``, resolved once per tag by ``_command``); a
        command task's is reported by the process that starts its container (``command.py``)."""
        if dispatch.task.kind is not TaskKind.PYTHON or dispatch.activity_id in self._unrunnable:
            return ""
        return self.image_of(dispatch)

    def _command(self, dispatch: DispatchActivity, job: Path, outcome: Path, started: Path) -> list[str]:
        """The launcher of the activity's container, under a guard that removes the container if this
        worker dies; earlier attempts' containers still on this daemon (their worker died with its
        guard) are removed first."""
        name = container_name(dispatch.activity_id, dispatch.attempt)
        if dispatch.attempt > 1:
            self.runtime.remove([container_name(dispatch.activity_id, n) for n in range(1, dispatch.attempt)])
        return guard_argv(self.runtime.remove_argv([name]), self._launcher(dispatch, job, outcome, started))

    def _launcher(self, dispatch: DispatchActivity, job: Path, outcome: Path, started: Path) -> list[str]:
        host_side = self._execute(dispatch, job, outcome, started)
        task = dispatch.task
        if task.kind is not TaskKind.PYTHON:
            return host_side  # the command itself goes into the image (command.in_container)
        try:
            image = self.image_of(dispatch)
        except ContainerError as exc:  # reported as the activity's failure once this ends (_no_outcome)
            self._unrunnable[dispatch.activity_id] = exc
            return [host_side[0], "-c", "raise SystemExit(1)"]
        env = self.env
        mounts = [(str(env.storage_root), False), (str(env.work_root), False), (str(env.log_root), False),
                  *((p, True) for p in env.import_path)]
        if task.ref.startswith("/"):
            mounts.append((str(Path(task.ref.rpartition(":")[0]).parent), True))
        for product in dispatch.products.values():
            with contextlib.suppress(SkyweaveError):
                path = LocalStorage.local_path(product.uri)
                if not path.is_relative_to(env.storage_root):
                    mounts.append((str(path), True))
        for folder in (env.storage_root, env.work_root, env.log_root):
            folder.mkdir(parents=True, exist_ok=True)
        name = container_name(dispatch.activity_id, dispatch.attempt)
        self._cidfile(job).unlink(missing_ok=True)
        # the interpreter replaces the image's entry point (a pipeline image's is its stage CLI)
        argv = self.runtime.run_argv(name, image, host_side[1:], mounts=mounts, resources=task.resources,
                                     env={"PYTHONUNBUFFERED": "1"}, memory_headroom=True,
                                     entrypoint=self.runtime.python)
        return [*argv[:argv.index("run") + 1], "--cidfile", str(self._cidfile(job)),
                *argv[argv.index("run") + 1:]]

    def _launch_dir(self, job: Path) -> Path | None:
        """Podman: a folder of the attempt's own.  Podman 4.3's conmon writes an empty ``oom`` file
        into the directory ``podman run`` started in when the kernel kills the container for memory
        (containers/conmon#504), and podman's ``OOMKilled`` stays false: the file says it, and it
        does not land in the worker's directory."""
        if self.runtime.engine != "podman":
            return None
        folder = self._run_dir(job)
        folder.mkdir(exist_ok=True)
        return folder

    @staticmethod
    def _run_dir(job: Path) -> Path:
        return job.with_name(job.name.removesuffix(".job.json") + ".run")

    @staticmethod
    def _cidfile(job: Path) -> Path:
        return job.with_name(job.name.removesuffix(".job.json") + ".cid")

    def _memory_mb(self, r: _Running) -> float:
        try:
            cid = self._cidfile(r.job).read_text().strip()
        except OSError:
            cid = ""
        used = cgroup_memory_bytes(cid) if cid else None
        return (used if used is not None else 0) / 2**20

    def _no_outcome(self, r: _Running, code: int, stderr: str) -> ActivityFailed | None:
        task = r.dispatch.task
        refused = self._unrunnable.pop(r.dispatch.activity_id, None)
        if refused is not None:
            return self._failure(r, "skyweave.ImageMissing", f"{refused.message} ({refused.hint})",
                                 retryable=False)
        name = container_name(r.dispatch.activity_id, r.dispatch.attempt)
        conmon_says = self.runtime.engine == "podman" and (self._run_dir(r.job) / "oom").exists()
        if (code == OOM_EXIT and task.resources.memory_mb is not None and task.kind is TaskKind.PYTHON
                and (conmon_says or self.runtime.oom_killed(name))):
            limit = task.resources.memory_mb
            return self._failure(r, "skyweave.MemoryLimit",
                                 over_memory(task.name, kernel_memory_mb(limit), limit)
                                 + " by the kernel", retryable=False)
        if code in EXIT_ENGINE and task.kind is TaskKind.PYTHON:
            return self._failure(r, "skyweave.ContainerFailed",
                                 f"{self.name} could not run task {task.name!r} in its container "
                                 f"(exit status {code}): {stderr}", retryable=code == 125)
        return None

    def _halt(self, r: _Running) -> None:
        self.runtime.remove([container_name(r.dispatch.activity_id, r.dispatch.attempt)])

    def _gone(self, r: _Running) -> None:
        self._cidfile(r.job).unlink(missing_ok=True)
        if self.runtime.engine == "podman":
            shutil.rmtree(self._run_dir(r.job), ignore_errors=True)
        if r.dispatch.task.kind is TaskKind.PYTHON:  # a command's container removes itself (--rm)
            self._removals.put(container_name(r.dispatch.activity_id, r.dispatch.attempt))

    def _remove_loop(self) -> None:
        """Removes ended containers in batches, off the path that reports outcomes."""
        while True:
            first = self._removals.get()
            if first is None:
                return
            names = [first]
            with contextlib.suppress(queue.Empty):
                while len(names) < 100:
                    name = self._removals.get_nowait()
                    if name is None:
                        self.runtime.remove(names)
                        return
                    names.append(name)
            self.runtime.remove(names)

    def close(self) -> None:
        super().close()
        if self._remover is not None:
            self._removals.put(None)
            self._remover.join()
            self._remover = None
