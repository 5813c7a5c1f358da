"""Executor factories for the contract suite: each makes one executor of 2 slots for an
``ExecutionEnv`` (the ``env`` fixture: storage, work and log roots under the test's tmp_path).

A new executor joins the suite by appending one ``pytest.param`` to ``EXECUTOR_FACTORIES`` (one
that needs a real engine — Slurm, Dask — with ``marks=pytest.mark.integration`` and a factory that
skips when the engine is not running, as the PostgreSQL store's does).  What it cannot do it
declares in ``Executor.capabilities``; the tests of those things then skip, saying so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from skyweave.executors.base import ExecutionEnv, Executor
from skyweave.executors.local import LocalExecutor
from skyweave.executors.per_process import SubprocessExecutor
from skyweave.executors.slurm import SlurmExecutor
from skyweave.executors.slurm_commands import parse_options
from skyweave.executors.threads import ThreadExecutor
from tests.services import service_url
from tests.unit.executors.helpers import TASKS_IMPORT_ROOT

ExecutorFactory = Callable[[ExecutionEnv], Executor]
SLOTS = 2


def _slurm(env: ExecutionEnv) -> Executor:
    """On the one-node cluster ``scripts/services.sh start slurm`` runs (skipped, or failed under
    SKYWEAVE_REQUIRE_SERVICES, when it is not running)."""
    return SlurmExecutor(env, parse_options(service_url("slurm") + "&poll_s=0.5"), max_jobs=SLOTS)


def _docker(env: ExecutionEnv) -> Executor:
    """Containers of the skyweave image, sharing the host's process ids (the suite checks that a
    stopped task's process is gone) and the test's folder (its tasks wait for files there)."""
    from skyweave.executors.container import ContainerExecutor
    from tests.services import docker_setting
    from tests.unit.executors.helpers import TASKS_IMPORT_ROOT

    setting = docker_setting(pid="host", mount=str(env.storage_root.parent))
    return ContainerExecutor(setting, dataclasses.replace(env, import_path=(str(TASKS_IMPORT_ROOT),)),
                             processes=SLOTS)


def _podman(env: ExecutionEnv) -> Executor:
    """The same executor with the ``podman`` setting: the test podman (no daemon) and its storage."""
    from skyweave.executors.container import ContainerExecutor
    from tests.services import podman_setting

    setting = podman_setting(pid="host", mount=str(env.storage_root.parent))
    return ContainerExecutor(setting, dataclasses.replace(env, import_path=(str(TASKS_IMPORT_ROOT),)),
                             processes=SLOTS)


def _dask_local_cluster(env: ExecutionEnv) -> Executor:
    """A LocalCluster in this process (one worker of two threads), closed with the executor."""
    from distributed import LocalCluster

    from skyweave.executors.on_dask import DaskExecutor

    cluster = LocalCluster(n_workers=1, threads_per_worker=SLOTS, processes=False, dashboard_address=":0")
    return DaskExecutor(env, cluster=cluster, slots=SLOTS, owns_cluster=True)


def _dask_scheduler(env: ExecutionEnv) -> Executor:
    """The `dask scheduler` + two `dask worker` processes of scripts/services.sh (``dask``); they do
    not share this process's sys.path, so the job names the tests' import root."""
    from skyweave.executors.on_dask import DaskExecutor

    env = replace(env, import_path=(str(TASKS_IMPORT_ROOT), *env.import_path))
    return DaskExecutor(env, address=service_url("dask"), slots=SLOTS)


def _kubernetes_fake_api(env: ExecutionEnv) -> Executor:
    """Against a fake Kubernetes API server that validates each Job against the official schemas
    and runs its command as a local process (no cluster can run here: tests/unit/executors/k8s_fake.py)."""
    from tests.unit.executors.k8s_fake import executor_on_fake

    made: Executor = executor_on_fake(env, slots=SLOTS)
    return made


EXECUTOR_FACTORIES = [
    pytest.param(lambda env: LocalExecutor(env, processes=SLOTS), id="local"),
    pytest.param(lambda env: ThreadExecutor(env, threads=SLOTS), id="threads"),
    pytest.param(lambda env: SubprocessExecutor(env, processes=SLOTS), id="subprocess"),
    pytest.param(_slurm, id="slurm", marks=pytest.mark.integration),
    pytest.param(_docker, id="docker", marks=pytest.mark.integration),
    pytest.param(_podman, id="podman", marks=pytest.mark.integration),
    pytest.param(_dask_local_cluster, id="dask-localcluster"),
    pytest.param(_kubernetes_fake_api, id="kubernetes-fake-api"),
    pytest.param(_dask_scheduler, id="dask-scheduler", marks=pytest.mark.integration),
]


@pytest.fixture(params=EXECUTOR_FACTORIES)
def executor(request: pytest.FixtureRequest, env: ExecutionEnv) -> Iterator[Executor]:
    """A started executor, closed after the test."""
    factory: ExecutorFactory = request.param
    made = factory(env)
    made.start()
    yield made
    made.close()
