"""The notebook users start from, executed in a real Jupyter kernel (nbclient, the ipykernel of this
environment): ``examples/remote_radio.ipynb`` against ``skyweave server --controller`` on 127.0.0.1
with a ``skyweave worker`` in a process of its own.  It puts a real uvfits file (pyuvdata's) into an S3
bucket (moto's server), turns it, read by its ``s3://`` URL, into visibilities with a task defined in
one of its cells, runs the radio pipeline's imaging workflow remotely and displays the merged FITS
image with matplotlib.  A second notebook runs cell-defined tasks with the embedded Client."""

from __future__ import annotations

import hashlib
import linecache
import shutil
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest

import skyweave
from skyweave.errors import SkyweaveError
from skyweave.store import open_store
from tests.s3 import SECRET, new_bucket

from .helpers import CLI, poll, stop

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pyuvdata = pytest.importorskip("pyuvdata")
fits = pytest.importorskip("astropy.io.fits")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "remote_radio.ipynb"
VIS = Path(pyuvdata.__file__).parent / "data" / "fewant_randsrc_airybeam_Nsrc100_10MHz.uvfits"
pytestmark = pytest.mark.slow  # a server, a worker and a kernel: ~40 s on a quiet 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str, token: str) -> bool:
    try:
        return httpx2.get(f"{url}/api/v1/health", headers={"Authorization": f"Bearer {token}"},
                          timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


def execute(notebook: Any, cwd: Path) -> Any:
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def outputs(cell: Any) -> list[Any]:
    return list(cell.get("outputs", []))


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    """A new bucket on the moto S3 server, its endpoint and throw-away credentials in the
    environment of this process and of the server, worker and kernel it starts."""
    with pytest.MonkeyPatch.context() as patch:
        yield new_bucket(patch)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bucket: str) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("server")
    cli = CLI(root, root / "store")
    token = cli.json("tokens", "create", "--name", "notebook", "--scope", "write")["token"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(cli.popen("server", "--port", str(port), "--controller", "--module", "radio_nenufar",
                               log=root / "server.log"))
        procs.append(cli.popen("worker", "--slots", "2", log=root / "worker.log"))
        poll(lambda: _up(url, token), deadline=60, what="the server to answer")
        yield url, token, root / "store"
    finally:
        for p in procs:
            stop(p)


def test_the_example_notebook_images_a_real_observation_remotely(server: tuple[str, str, Path], bucket: str,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from radio_nenufar.ingest import to_vis

    url, token, store_dir = server
    work = tmp_path / "notebook"
    work.mkdir()
    monkeypatch.setenv("SKYWEAVE_URL", url)
    monkeypatch.setenv("SKYWEAVE_TOKEN", token)
    monkeypatch.setenv("SKYWEAVE_VIS_FILE", str(VIS))
    monkeypatch.setenv("SKYWEAVE_INPUTS", f"s3://{bucket}/observations")
    notebook = execute(nbformat.read(NOTEBOOK, as_version=4), work)

    # the notebook put the observation into the bucket, and the run read it from there by its URL
    object_url = f"s3://{bucket}/observations/{VIS.name}"
    store = open_store(str(store_dir))
    try:
        (raw,) = [p for p in store.find_products(state=None) if p.type == "radio.uvfits"]
        (usage,) = [u for a in store.list_activities() if a.task_name == "ingest"
                    for u in store.list_usages(activity_id=a.id)]
    finally:
        store.close()
    assert (raw.uri, raw.size) == (object_url, VIS.stat().st_size)
    assert raw.checksum == "sha256:" + hashlib.sha256(VIS.read_bytes()).hexdigest()
    assert usage.product_id == raw.id
    for path in store_dir.rglob("*"):  # the credentials reached neither the store nor its files
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    # the merged image came back as a FITS file and was displayed
    (fits_file,) = (work / "results").glob("*.fits")
    with fits.open(fits_file) as hdul:
        image, header = hdul[0].data, hdul[0].header
    summary = to_vis(VIS, tmp_path / "vis.npz", "fewant")
    assert np.all(np.isfinite(image)) and image.shape == (32, 32)   # as tests/pipelines/radio check
    assert (header["CRVAL1"], header["CRVAL2"]) == pytest.approx((summary["ra_deg"], summary["dec_deg"]))
    shown = [o for c in notebook.cells for o in outputs(c) if "image/png" in o.get("data", {})]
    assert len(shown) == 1 and len(shown[0]["data"]["image/png"]) > 1000

    # the task defined in a cell ran on the worker from a snapshot of the cell's source
    printed = "".join(o.get("text", "") for c in notebook.cells for o in outputs(c))
    version = printed.split("task version ")[1].split()[0]
    store = open_store(str(store_dir))
    try:
        (spec,) = [s for s, _ in store.list_tasks() if s.name == "ingest"]
        ingest_acts = [a for a in store.list_activities() if a.task_name == "ingest"]
    finally:
        store.close()
    assert spec.version == version and ingest_acts[0].state == "succeeded"
    snapshot = Path(spec.ref.rpartition(":")[0]).read_text()
    assert "def ingest(raw: Product, obs_id: str) -> Product:" in snapshot
    assert "from radio_nenufar.ingest import to_vis" in snapshot and "client" not in snapshot


def test_a_cell_workflow_needing_a_package_the_server_lacks_is_refused_naming_it(
        server: tuple[str, str, Path]) -> None:
    url, token, _ = server
    fake = types.ModuleType("skyweave_only_in_this_session")
    sys.modules[fake.__name__] = fake
    cell = ("import skyweave_only_in_this_session as only\nfrom skyweave import task, workflow\n"
            "@task\ndef use(x: int) -> int:\n    return x * only.factor()\n"
            "@workflow\ndef flow():\n    return use(x=2)\n")
    name = "<ipython-input-1-e2e-missing>"
    linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(compile(cell, name, "exec"), namespace)
        with skyweave.Client(url, token=token) as client, \
                pytest.raises(SkyweaveError, match="needs the module 'skyweave_only_in_this_session'"):
            client.submit(namespace["flow"])
    finally:
        del sys.modules[fake.__name__], linecache.cache[name]


def test_cell_tasks_run_with_the_embedded_client_in_a_kernel(tmp_path: Path) -> None:
    store = tmp_path / "store"
    cells = [
        "import numpy as np\nimport skyweave\nfrom skyweave import task, workflow\nGAIN = np.array([1.0, 2.0])",
        "class Scaler:\n    def __init__(self, k):\n        self.k = k\n    def __call__(self, v):\n        return v * self.k",
        "@task\ndef scale(x: float) -> float:\n    return float(Scaler(GAIN.sum())(x))\n\n"
        "@workflow\ndef flow(n: int = 2):\n    return [scale(x=i) for i in range(n)]",
        f"with skyweave.Client({str(store)!r}, workers=1) as c:\n"
        "    print(c.run(flow, {'n': 3}, timeout=120, progress=True).results(), scale.spec.ref)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    execute(notebook, tmp_path)
    printed = [o for o in outputs(notebook.cells[-1]) if o.get("name") == "stdout"]
    assert printed[0]["text"].strip() == "[0.0, 3.0, 6.0] __main__:scale"
    # the embedded Client's progress bar is a widget in a kernel too (rich in a terminal)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs(notebook.cells[-1]))
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert [(w["state"]["value"], w["state"]["max"]) for w in state.values()
            if w["model_name"] == "FloatProgressModel"] == [(3, 3)]
    (snapshot,) = (store / "code").glob("*/scale.py")
    assert "class Scaler:" in snapshot.read_text() and "GAIN = np.array([1.0, 2.0])" in snapshot.read_text()
    shutil.rmtree(store)
