"""A container engine (Docker or Podman) driven through its command-line client: the settings of
one (``ContainerRuntime``, read from an executor setting such as ``docker`` or
``docker://?host=unix:///run/d.sock&image=skyweave:local``), the ``run`` command line of an
activity, image digests, and stopping a container.

Setting syntax: ``docker`` or ``podman``, optionally as a URL whose query holds options:

* ``host`` — the daemon's address (``docker -H``; ``podman --url``); default: the client's own
  (``DOCKER_HOST``, the default socket);
* ``binary`` — the client program (default: ``docker`` / ``podman`` on ``PATH``);
* ``image`` — the image Python tasks without an image of their own run in (it must have skyweave
  installed: ``docker/skyweave.Dockerfile``);
* ``network`` — ``docker run --network`` (default: the engine's default);
* ``pid=host`` — containers share the host's process ids (process ids recorded on attempts are
  then the host's);
* ``mount=PATH`` (repeatable) — a host folder mounted read-write at the same path in every
  container (shared data that tasks name by path); ``python`` — the interpreter in the image.

Everything a container needs is mounted at the same path as on the host (storage, work and log
folders, input products, the task's code folder), so a job file's paths are valid inside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec

from skyweave.errors import SkyweaveError
from skyweave.model.specs import Resources, TaskKind, TaskSpec, default_version

ENGINES = ("docker", "podman")
INSPECT_TIMEOUT_S = 60.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
MEMORY_HEADROOM_MB = 64
"""The kernel's limit is the task's ``memory_mb`` plus this (or a quarter of it, if more): the
executor stops a container over ``memory_mb`` itself; the kernel only catches a process that grows
faster than it looks."""


class ContainerError(SkyweaveError):
    """The container engine cannot be reached, or an image is not there."""


@dataclass(frozen=True)
class ContainerRuntime:
    engine: str = "docker"
    binary: str = ""
    host: str = ""
    image: str = ""
    network: str = ""
    pid_host: bool = False
    mounts: tuple[str, ...] = ()
    python: str = "python"
    setting: str = field(default="", compare=False)

    @classmethod
    def parse(cls, setting: str) -> ContainerRuntime:
        """The runtime an executor setting names (``docker``, ``podman``, ``docker://?opts``)."""
        parts = urlsplit(setting.strip())
        engine = (parts.scheme or parts.path).lower()
        if engine not in ENGINES:
            raise ContainerError(f"{setting!r} names no container engine",
                                 hint="use docker or podman, e.g. docker://?host=unix:///run/docker.sock")
        query = parse_qs(parts.query)
        known = {"host", "binary", "image", "network", "pid", "mount", "python"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise ContainerError(f"unknown container option(s) {', '.join(unknown)} in {setting!r}",
                                 hint=f"known: {', '.join(sorted(known))}")

        def one(name: str, default: str = "") -> str:
            return query.get(name, [default])[-1]

        return cls(engine=engine, binary=one("binary"), host=one("host"), image=one("image"),
                   network=one("network"), pid_host=one("pid") == "host",
                   mounts=tuple(query.get("mount", [])), python=one("python", "python"),
                   setting=setting)

    @property
    def client(self) -> list[str]:
        """The client program with its global options."""
        argv = [self.binary or self.engine]
        if self.host:
            argv += ["-H", self.host] if self.engine == "docker" else ["--url", self.host]
        return argv

    def _call(self, *args: str, timeout: float = INSPECT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.client, *args], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContainerError(f"cannot run {self.client[0]!r}: {exc}",
                                 hint=f"install {self.engine} and start it (scripts/services.sh start "
                                      "docker), or name its client with binary= in the setting") from exc

    def digest(self, image: str) -> str:
        """The content digest (``sha256:…``, the image id) of ``image`` as the engine holds it now."""
        done = self._call("image", "inspect", "--format", "{{.Id}}", image)
        found = done.stdout.strip()
        if _HEX64.fullmatch(found):  # podman writes the id without its algorithm
            found = "sha256:" + found
        if done.returncode != 0 or not found.startswith("sha256:"):
            raise ContainerError(
                f"image {image!r} is not in {self.engine} ({self.host or 'its default host'}): "
                f"{done.stderr.strip() or found}",
                hint=f"build it first (`{self.engine} build -t {image} …`) or load it; "
                     "skyweave never pulls from a registry")
        return found

    def run_argv(self, name: str, image: str, command: Sequence[str], *, mounts: Iterable[tuple[str, bool]],
                 resources: Resources, workdir: str = "", env: dict[str, str] | None = None,
                 memory_headroom: bool = False, remove: bool = False, entrypoint: str = "") -> list[str]:
        """``docker run`` of ``command`` in ``image`` as container ``name``; ``mounts`` are
        (host path, read-only) pairs, each mounted at the same path; ``entrypoint`` replaces the
        image's (which otherwise gets ``command`` as its arguments)."""
        argv = [*self.client, "run", "--name", name, "--label", "skyweave=1",
                "--user", f"{os.getuid()}:{os.getgid()}"]
        if remove:
            argv.append("--rm")
        if self.network:
            argv += ["--network", self.network]
        if self.pid_host:
            argv += ["--pid", "host"]
        seen: set[str] = set()
        for path, read_only in [*((m, False) for m in self.mounts), *mounts]:
            if path in seen:
                continue
            seen.add(path)
            argv += ["-v", f"{path}:{path}" + (":ro" if read_only else "")]
        if workdir:
            argv += ["-w", workdir]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        argv += resource_options(resources, memory_headroom=memory_headroom)
        return [*argv, image, *command]

    def remove(self, names: Sequence[str]) -> None:
        """Kill and remove these containers (those already gone are ignored)."""
        if names:
            with contextlib.suppress(ContainerError):
                self._call(*self.remove_argv(names)[len(self.client):])

    def remove_argv(self, names: Sequence[str]) -> list[str]:
        """The command that kills and removes these containers at once."""
        # podman's rm -f first asks politely for 10 s (docker's kills at once)
        grace = ["-t", "0"] if self.engine == "podman" else []
        return [*self.client, "rm", "-f", *grace, *names]

    def oom_killed(self, name: str) -> bool:
        with contextlib.suppress(ContainerError):
            done = self._call("inspect", "--format", "{{.State.OOMKilled}}", name)
            return done.stdout.strip() == "true"
        return False


def kernel_memory_mb(memory_mb: int) -> int:
    return memory_mb + max(MEMORY_HEADROOM_MB, memory_mb // 4)


def resource_options(resources: Resources, *, memory_headroom: bool = False) -> list[str]:
    """``--cpus``, ``--memory`` and ``--gpus`` for a task's resources."""
    out = ["--cpus", f"{resources.cpus:g}"] if resources.cpus > 0 else []
    if resources.memory_mb is not None:
        mb = kernel_memory_mb(resources.memory_mb) if memory_headroom else resources.memory_mb
        out += ["--memory", f"{mb}m", "--memory-swap", f"{mb}m"]
    if resources.gpus > 0:
        out += ["--gpus", str(resources.gpus)]
    return out


def container_name(activity_id: str, attempt: int) -> str:
    """The name of the container an attempt runs in (so a launcher can stop it by name)."""
    return f"skyweave-{activity_id}-{attempt}"


def cgroup_memory_bytes(container_id: str) -> int | None:
    """What a running Docker or Podman container uses now, from its cgroup (v1 or v2, cgroupfs or
    systemd driver; ``None``: not found here)."""
    roots = (f"/sys/fs/cgroup/memory/docker/{container_id}/memory.usage_in_bytes",
             f"/sys/fs/cgroup/docker/{container_id}/memory.current",
             f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.current",
             f"/sys/fs/cgroup/memory/libpod_parent/libpod-{container_id}/memory.usage_in_bytes",
             f"/sys/fs/cgroup/libpod_parent/libpod-{container_id}/memory.current",
             f"/sys/fs/cgroup/machine.slice/libpod-{container_id}.scope/memory.current")
    for candidate in roots:
        with contextlib.suppress(OSError, ValueError):
            return int(Path(candidate).read_text())
    return None


def pin_image(spec: TaskSpec, runtime: ContainerRuntime) -> TaskSpec:
    """``spec`` with the digest its image has now (``image_digest``) and a code hash that includes
    it: a version runs that image content and no other, and reusing a version with other image
    content is refused like changed code.  A Python task whose version is the default one (its
    code hash, ``@task`` without ``version=``) gets the version of the new hash: an image rebuilt
    under the same tag is a new version by itself, as edited code is.  A spec already pinned, or
    without image, is returned."""
    if not spec.image or spec.image_digest:
        return spec
    digest = runtime.digest(spec.image)
    code = "sha256:" + hashlib.sha256(f"{spec.code_hash}|{digest}".encode()).hexdigest()
    version = spec.version
    if spec.kind is TaskKind.PYTHON and version == default_version(spec.code_hash):
        version = default_version(code)
    return msgspec.structs.replace(spec, image_digest=digest, code_hash=code, version=version)
