"""The IVOA ProvDM export read back by voprov, the ProvDM authors' library, with its classes
recognised (ActivityDescription, UsageDescription, Parameter…), not as generic PROV records.

voprov 0.0.4 only works on prov 2.0.1, which cannot share an environment with skyweave's prov 3,
so it runs in a virtual environment of its own that this test creates once and keeps
(``.venv-voprov`` at the repository root; ``make clean`` removes it).  Marked ``integration``: the
first run installs from PyPI."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import venv
from collections import Counter
from pathlib import Path

import pytest

from skyweave.client import Client
from skyweave.provenance.export import export
from skyweave.provenance.provsap import provsap
from tests.services import services_required

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venv-voprov"
REQUIREMENTS = ["voprov==0.0.4", "prov==2.0.1", "python-dateutil==2.9.0.post0", "requests==2.34.2",
                "lxml==6.2.0", "PyYAML==6.0.4"]
"""voprov and what it imports without declaring it (checked: ENVIRONMENT.md)."""

READ = """
import collections, json, sys
from voprov.models.model import VOProvDocument
doc = VOProvDocument.deserialize(source=sys.argv[1], format="json")
again = VOProvDocument.deserialize(content=doc.serialize(format="json"), format="json")
print(json.dumps({"read": collections.Counter(type(r).__name__ for r in doc.get_records()),
                  "again": collections.Counter(type(r).__name__ for r in again.get_records()),
                  "provn": doc.serialize(format="provn")[:100]}))
"""


def voprov_python() -> Path:
    """The Python of the voprov environment, made on first use (under a lock: tests may run at once)."""
    python = VENV / "bin" / "python"
    stamp = VENV / (".installed-" + "-".join(REQUIREMENTS).replace("/", "_"))
    if stamp.exists():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".venv-voprov.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            venv.create(VENV, with_pip=True, clear=True)
            done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
                                  capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                message = f"cannot install {' '.join(REQUIREMENTS)}: {done.stderr[-2000:]}"
                if services_required():
                    pytest.fail(message, pytrace=False)
                pytest.skip(message)
            stamp.touch()
    return python


def _read(tmp_path: Path, text: str) -> dict[str, Counter[str]]:
    path = tmp_path / "export.json"
    path.write_text(text)
    done = subprocess.run([str(voprov_python()), "-c", READ, str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return {k: Counter(v) for k, v in found.items() if k != "provn"}


def test_voprov_recognises_the_provdm_classes(xray: tuple[Client, str], tmp_path: Path) -> None:
    client, run_id = xray
    store = client.store
    counts = _read(tmp_path, export(store, run_id=run_id, fmt="voprov"))
    read = counts["read"]
    activities = store.list_activities(run_id=run_id)
    versions = {(a.task_name, a.task_version) for a in activities}
    n_values = sum(1 for a in activities for v in a.arguments.values() if not (isinstance(v, dict) and "$product" in v))
    assert read["VOProvActivityDescription"] == len(versions)
    assert read["VOProvUsageDescription"] == 3 and read["VOProvGenerationDescription"] == 3
    assert read["VOProvEntityDescription"] == 3 and read["VOProvParameterDescription"] > 0
    assert read["VOProvParameter"] == read["VOProvWasConfiguredBy"] == n_values
    assert read["VOProvDataSetEntity"] == len(store.find_products(run_id=run_id, state=None))
    assert read["VOProvIsDescribedBy"] >= len(activities) + read["VOProvDataSetEntity"]
    assert counts["again"] == read, "voprov writes it back and reads the same records"

    plain = _read(tmp_path, export(store, run_id=run_id, fmt="provdm"))["read"]
    assert plain["VOProvActivityDescription"] == 0, "plain PROV is only generic records to voprov"


def test_a_provsap_ivoa_response_is_read_by_voprov(xray: tuple[Client, str], tmp_path: Path) -> None:
    client, run_id = xray
    product = sorted(p.id for p in client.store.find_products(run_id=run_id) if p.type == "demo.l2.events")[0]
    response = provsap(client.store, {"ID": product, "MODEL": "IVOA", "RESPONSEFORMAT": "PROV-JSON"})
    read = _read(tmp_path, response.body)["read"]
    assert read["VOProvActivityDescription"] == 3 and read["VOProvDataSetEntity"] == 3


if __name__ == "__main__":  # `python tests/integration/test_voprov.py` prepares the environment
    print(voprov_python(), file=sys.stderr)
