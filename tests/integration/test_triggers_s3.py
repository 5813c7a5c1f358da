"""Object arrival in an S3 bucket starts one run per object version (issue 16, point 1), on the
moto S3 server ``scripts/services.sh`` starts: the key of an event is bucket/key@ETag, so a new
version of an object is a new event and the same content written again is not; credentials stay
in the environment, never in the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave import Client
from skyweave.triggers import on_objects
from skyweave.triggers.service import TriggerService
from tests.s3 import SECRET, new_bucket

pytestmark = pytest.mark.integration

FLOW = str(Path(__file__).with_name("triggers_flow.py"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), engine=False) as c:
        yield c


def test_objects_arriving_in_a_bucket_start_one_run_per_version(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from skyweave.storage.s3 import filesystem

    bucket = new_bucket(monkeypatch)
    fs = filesystem()
    client.store.save_trigger(
        on_objects(
            "landing",
            url=f"s3://{bucket}/incoming/",
            pattern=r"^ep(?P<obs_id>\d+)",
            workflow=f"{FLOW}:nightly",
            params={"at": "{url}"},
        )
    )
    fs.pipe(f"{bucket}/incoming/ep0001.fits", b"first")
    fs.pipe(f"{bucket}/incoming/ep0002.fits", b"second")
    fs.pipe(f"{bucket}/incoming/notes.txt", b"not an observation")
    fs.pipe(f"{bucket}/elsewhere/ep0003.fits", b"outside the prefix")
    service = TriggerService(client)
    service.step()
    service.step()

    def runs() -> list[str]:
        return sorted(r.params["at"] for r in client.store.list_runs(graph=False) if r.labels.get("trigger"))

    assert runs() == [f"s3://{bucket}/incoming/ep0001.fits", f"s3://{bucket}/incoming/ep0002.fits"]
    keys = {f.fields["obs_id"]: f.key for f in client.store.trigger_history("landing")}
    assert set(keys) == {"0001", "0002"} and all(
        "@" in k and len(k.split("@")[1]) >= 32 for k in keys.values()
    )

    fs.pipe(f"{bucket}/incoming/ep0001.fits", b"first")  # the same content again: the same ETag
    TriggerService(client).step()  # (a restarted trigger process, too)
    assert len(runs()) == 2
    fs.pipe(f"{bucket}/incoming/ep0001.fits", b"first, reprocessed upstream")  # a new version
    TriggerService(client).step()
    assert len(runs()) == 3
    store_dir = Path(client.store.url.removeprefix("sqlite:///")).parent
    for stored in store_dir.rglob("*"):  # the database, its WAL, the bus: credentials stay in the environment
        assert not stored.is_file() or SECRET.encode() not in stored.read_bytes(), stored
