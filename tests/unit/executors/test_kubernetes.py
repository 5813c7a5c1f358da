"""What the Kubernetes executor does beyond the contract suite (which it passes against the fake
API server of ``k8s_fake.py``; no cluster can run here): its Job manifests pass the official
Kubernetes 1.37 schemas, GPUs are asked as ``nvidia.com/gpu``, state comes from one list per poll
for all Jobs, an eviction is reported as a lost worker (retryable), cancel deletes the Job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest

from skyweave.errors import SkyweaveError
from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.kubernetes import KubernetesOptions, job_manifest, parse_options
from skyweave.model.messages import ActivityFailed, ActivityFinished
from skyweave.model.specs import Resources
from tests.unit.executors.helpers import by_path, dispatch, run_until, wait_started
from tests.unit.executors.k8s_fake import KUBERNETES_VERSION, executor_on_fake


@pytest.fixture
def executor(env: ExecutionEnv) -> Iterator[Any]:
    made = executor_on_fake(env, slots=4)
    made.start()
    yield made
    made.close()


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "release"
    yield path
    path.touch()


def test_a_gpu_job_manifest_passes_the_official_schemas(env: ExecutionEnv) -> None:
    d = dispatch(by_path("add"), {"x": 1, "y": 2}, timeout_s=90.5)
    d = msgspec.structs.replace(d, task=msgspec.structs.replace(
        d.task, resources=Resources(cpus=4, memory_mb=2048, gpus=2)))
    manifest = job_manifest(d, env, KubernetesOptions(namespace="ep", image="ep/pipeline:3",
                                                      service_account="skyweave"), "sw-test")
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "4", "memory": "2048Mi"},
                                                 "limits": {"memory": "2048Mi", "nvidia.com/gpu": "2"}}
    assert manifest["spec"]["activeDeadlineSeconds"] == 91 and manifest["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "skyweave"
    broken = {**manifest, "spec": {**manifest["spec"], "backofLimit": 0}}
    with pytest.raises(kubernetes_validate.ValidationError):  # the check is not vacuous
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_job_it_made_was_valid_and_state_is_one_list_per_poll(executor: Any) -> None:
    batch = [dispatch(by_path("add"), {"x": i, "y": 1}) for i in range(4)]
    executor.submit(batch)
    final = run_until(executor, [d.activity_id for d in batch])
    assert all(isinstance(o, ActivityFinished) for o in final.values())
    assert len(executor.fake.created) == 4 and executor.fake.refused == []
    lists = [r for r in executor.fake.requests if r.startswith("GET /apis/batch/v1/namespaces/default/jobs")]
    assert len(lists) == executor.list_calls  # one call per poll, whatever the number of jobs
    assert not executor.fake.jobs  # finished Jobs are deleted once their outcome is read


def test_an_evicted_pod_is_a_lost_worker_and_retryable(executor: Any, release: Path) -> None:
    d = dispatch(by_path("wait_for_file"), {"path": str(release)})
    executor.submit([d])
    events: list[Outcome] = []
    wait_started(executor, d.activity_id, events)
    executor.fake.evict(next(iter(executor.fake.jobs)))
    outcome = run_until(executor, [d.activity_id])[d.activity_id]
    assert isinstance(outcome, ActivityFailed), outcome
    assert outcome.error_type == "skyweave.WorkerDied" and outcome.retryable
    assert "evicted" in outcome.message


def test_cancel_deletes_the_job(executor: Any, release: Path) -> None:
    d = dispatch(by_path("wait_for_file"), {"path": str(release)})
    executor.submit([d])
    wait_started(executor, d.activity_id, [])
    executor.cancel([d.activity_id])
    assert any(r.startswith("DELETE /apis/batch/v1/namespaces/default/jobs/") for r in executor.fake.requests)
    assert not executor.fake.jobs


def test_options_come_from_the_setting() -> None:
    options = parse_options("kubernetes://?namespace=ep&image=ep/l1:2&poll_s=2")
    assert (options.namespace, options.image, options.poll_s) == ("ep", "ep/l1:2", 2.0)
    with pytest.raises(SkyweaveError, match="unknown kubernetes executor option"):
        parse_options("kubernetes://?namspace=ep")
