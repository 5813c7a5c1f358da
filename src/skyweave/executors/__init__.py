"""Executors, chosen by name or URL scheme from a registry (``EXECUTORS``; an executor adds itself
with ``register_executor``), so that the engine, the CLI and the settings never name a class:

* ``local`` — a pool of child processes on this host (the default);
* ``threads`` — a thread pool inside this process (tests, tiny tasks; stops nothing);
* ``subprocess`` — one ``python -m skyweave.execute`` process per activity (a fresh interpreter
  each; what the Slurm, container and Kubernetes executors run elsewhere);
* ``slurm`` (``slurm://?partition=…&account=…``) — each activity a Slurm batch job, a fan-out a
  job array (``executors/slurm.py``; options in ``executors/slurm_commands.py``);
* ``dask://HOST:PORT`` — each activity a task on a Dask cluster (``dask`` alone: a LocalCluster;
  ``executors/on_dask.py``);
* ``kubernetes://?namespace=NS&image=IMAGE`` — a Kubernetes Job per activity
  (``executors/kubernetes.py``);
* a URL's scheme is the key, and the factory gets the whole text (the scheduler's address, options).

A factory imports its executor when called, so importing this package (as every worker child
process does, for the boundary) loads no executor it does not use.
"""

from __future__ import annotations

from collections.abc import Callable

from skyweave.errors import SkyweaveError
from skyweave.executors.base import ExecutionEnv, Executor

__all__ = ["EXECUTORS", "ExecutorFactory", "executor_key", "open_executor", "register_executor"]

ExecutorFactory = Callable[[str, ExecutionEnv, int], Executor]
"""Makes an executor from its setting (``local``, ``dask://host:8786``), the execution environment
and how many activities it should run at once (``--workers``/``--slots``)."""

EXECUTORS: dict[str, ExecutorFactory] = {}
"""Name or URL scheme -> factory; filled by ``register_executor``."""


def register_executor(key: str, factory: ExecutorFactory) -> None:
    """Make ``open_executor`` build ``key`` (a name, or the scheme of ``key://…``) with ``factory``
    (a later registration wins)."""
    EXECUTORS[key.lower()] = factory


def executor_key(setting: str) -> str:
    """The registry key of an executor setting: its URL scheme, or the whole name."""
    return (setting.partition("://")[0] if "://" in setting else setting).strip().lower()


def open_executor(setting: str, env: ExecutionEnv, *, slots: int) -> Executor:
    """The executor that ``setting`` names, running ``slots`` activities at once."""
    factory = EXECUTORS.get(executor_key(setting))
    if factory is None:
        raise SkyweaveError(f"unknown executor {setting!r}",
                            hint=f"use one of: {', '.join(sorted(EXECUTORS))} (setting `executor`, "
                                 "option --executor, SKYWEAVE_EXECUTOR)")
    return factory(setting, env, slots)


def _local(_setting: str, env: ExecutionEnv, slots: int) -> Executor:
    from skyweave.executors.local import LocalExecutor

    return LocalExecutor(env, processes=slots)


def _threads(_setting: str, env: ExecutionEnv, slots: int) -> Executor:
    from skyweave.executors.threads import ThreadExecutor

    return ThreadExecutor(env, threads=slots)


def _subprocess(_setting: str, env: ExecutionEnv, slots: int) -> Executor:
    from skyweave.executors.per_process import SubprocessExecutor

    return SubprocessExecutor(env, processes=slots)


def _slurm(setting: str, env: ExecutionEnv, slots: int) -> Executor:
    from skyweave.executors.slurm import SlurmExecutor
    from skyweave.executors.slurm_commands import parse_options

    return SlurmExecutor(env, parse_options(setting), max_jobs=slots)


def _dask(setting: str, env: ExecutionEnv, slots: int) -> Executor:
    """``dask://HOST:PORT`` (a running scheduler), or ``dask`` / ``dask://local`` (a LocalCluster)."""
    from skyweave.executors.on_dask import DaskExecutor, local_cluster_executor

    address = setting.partition("://")[2].strip().rstrip("/")
    if address in ("", "local"):
        return local_cluster_executor(env, slots=slots)
    return DaskExecutor(env, address=f"tcp://{address}", slots=slots)


def _kubernetes(setting: str, env: ExecutionEnv, slots: int) -> Executor:
    """``kubernetes://?namespace=NS&image=IMAGE`` (the cluster of the kubeconfig, or in-cluster)."""
    from skyweave.executors.kubernetes import KubernetesExecutor, parse_options

    return KubernetesExecutor(env, parse_options(setting), slots=slots)


register_executor("local", _local)
register_executor("threads", _threads)
register_executor("subprocess", _subprocess)
register_executor("slurm", _slurm)


def _container(setting: str, env: ExecutionEnv, slots: int) -> Executor:
    from skyweave.executors.container import ContainerExecutor

    return ContainerExecutor(setting, env, processes=slots)


register_executor("docker", _container)
register_executor("podman", _container)
register_executor("dask", _dask)
register_executor("kubernetes", _kubernetes)
