"""Each pipeline's image, built from its Dockerfile on a local base (``scripts/images.sh``: no
registry), runs a stage of that pipeline through skyweave: the stage's own task, declared with the
image, dispatched by the controller to the ``docker`` executor (the X-ray stage also to the
``podman`` one), which runs ``python -m skyweave.execute`` in a container of the image (issue 14,
point 2).  The product lands in the run's storage with its checksum, and the task version and the
activity record the image digest that made it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from skyweave import Client, Product, workflow
from skyweave.authoring.task import Task
from skyweave.executors.containers import ContainerRuntime
from skyweave.storage.local import LocalStorage
from tests.services import DOCKER_BIN, docker_image, docker_setting, podman_setting

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def in_image(task: Task, image: str) -> Task:
    """The pipeline's own task, declared to run in ``image``."""
    return Task(msgspec.structs.replace(task.spec, image=image), task.fn)


def run_in_container(tmp_path: Path, image: str, wf: Any, params: dict[str, Any],
                     inputs: dict[str, tuple[str, str]] | None = None, *,
                     engine: str = "docker") -> tuple[Any, list[Any], str]:
    """Run ``wf`` with the docker (or podman) executor; ``inputs``: param -> (file, product type) to
    add first.  Returns the run's result, its products and the digest of ``image``."""
    if engine == "docker":
        host = docker_image(image)
        digest = subprocess.run([DOCKER_BIN, "-H", host, "image", "inspect", "--format", "{{.Id}}", image],
                                capture_output=True, text=True, check=True).stdout.strip()
        setting = docker_setting()
    else:
        setting = podman_setting(image)
        digest = ContainerRuntime.parse(setting).digest(image)
    with Client(str(tmp_path / "store"), executor=setting, container=setting, workers=1) as client:
        for name, (path, kind) in (inputs or {}).items():
            params[name] = client.add_product(path, type=kind).id
        handle = client.submit(wf, params)
        handle.wait(timeout=900)  # generous: the CI machine is shared
        assert handle.status == "succeeded", [a.error for a in handle.activities()]
        (act,) = handle.activities()
        spec = client.store.get_task(act.task_name, act.task_version)
        assert (spec.image, spec.image_digest) == (image, digest)
        assert act.image_digest == digest  # the content that ran, reported by the executor
        return handle.results(), handle.products(), digest


def _checked(product: Any) -> Path:
    path = LocalStorage.local_path(product.uri)
    assert product.checksum == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return path


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_xray_decodes_a_detector_in_its_image(tmp_path: Path, engine: str) -> None:
    from xray_ep import conventions as cv
    from xray_ep import l1
    from xray_ep.simulate import simulate_observation

    decode = in_image(l1.decode_cmos, "skyweave-xray-ep")

    @workflow
    def decode_one(l0: str, cmos: str) -> Any:
        return decode(l0=Product("", id=l0), cmos=cmos)

    sim = simulate_observation(tmp_path / "obs", "ep0302", 41, n_cmos=2)
    _, products, _ = run_in_container(tmp_path, "skyweave-xray-ep", decode_one, {"cmos": sim["cmos"][0]},
                                           {"l0": (sim["l0"], cv.L0_TELEMETRY)}, engine=engine)
    (made,) = [p for p in products if p.type == cv.L1_EVENTS]
    assert made.detector == sim["cmos"][0] and made.attributes["n_events"] > 0
    assert _checked(made).read_bytes().startswith(b"SIMPLE")          # a FITS file


def test_radio_extracts_a_subband_in_its_image(tmp_path: Path) -> None:
    from radio_nenufar import conventions as cv
    from radio_nenufar import partition
    from radio_nenufar.simulate import simulate_observation

    extract = in_image(partition.extract_subband, "skyweave-radio-nenufar")

    @workflow
    def one_subband(vis: str) -> Any:
        return extract(vis=Product("", id=vis), subband=0)

    sim = simulate_observation(tmp_path / "sim", "nenu0302", 7, subbands_mhz=(60.0,), n_times=3)
    _, products, _ = run_in_container(tmp_path, "skyweave-radio-nenufar", one_subband, {},
                                      {"vis": (str(sim["vis"]), cv.VIS_RAW)})
    (made,) = [p for p in products if p.type == cv.VIS_SUBBAND]
    assert made.detector == "sb000"
    assert set(cv.read_vis(_checked(made))["subband"].tolist()) == {0}


def test_bursts_trains_a_model_in_its_image(tmp_path: Path) -> None:
    from nenufar_bursts import conventions as cv
    from nenufar_bursts import train

    fit = in_image(train.train_model, "skyweave-nenufar-bursts")

    @workflow
    def small_model(n_chunks: int) -> Any:
        return fit(seed=1, n_chunks=n_chunks)

    _, products, _ = run_in_container(tmp_path, "skyweave-nenufar-bursts", small_model, {"n_chunks": 10})
    (model,) = [p for p in products if p.type == cv.MODEL]
    assert model.version.endswith("n10")
    assert _checked(model).stat().st_size > 0
