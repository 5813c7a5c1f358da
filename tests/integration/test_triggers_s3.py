"""Object arrival in an S3 bucket starts one run per object version (issue 16, point 1), on the
moto S3 server ``scripts/services.sh`` starts: the key of an event is bucket/key@ETag, so a new
version of an object is a new event and the same content written again is not; credentials stay
in the environment, never in the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class Listed:
    """The keys S3 returned to the trigger's ``ListObjectsV2`` calls (what each poll cost)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import s3fs

        self.keys: list[str] = []
        self.calls = 0
        real = s3fs.S3FileSystem.call_s3

        def counting(fs: Any, method: str, *args: Any, **kwargs: Any) -> Any:
            page = real(fs, method, *args, **kwargs)
            if method == "list_objects_v2":
                self.calls += 1
                self.keys.extend(c["Key"].rsplit("/", 1)[-1] for c in page.get("Contents", []))
            return page

        monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", counting)

    def take(self) -> list[str]:
        keys, self.keys = self.keys, []
        return keys


def test_a_poll_lists_only_the_keys_after_the_cursor_and_the_last_overlap_s(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 60,000-object bench stalled because every poll listed the whole growing prefix."""
    from skyweave.storage.s3 import filesystem

    bucket = new_bucket(monkeypatch)
    fs = filesystem()
    listed = Listed(monkeypatch)
    client.store.save_trigger(on_objects("landing", url=f"s3://{bucket}/incoming/", workflow=f"{FLOW}:nightly",
                                         params={"at": "{url}"}, overlap_s=5, rescan_s=600))
    for i in range(5):
        fs.pipe(f"{bucket}/incoming/ep{i:04d}.fits", b"x")
    fs.pipe(f"{bucket}/zz-elsewhere/ep9999.fits", b"outside the prefix, after it")
    now = [1_000.0]
    service = TriggerService(client, clock=lambda: now[0])
    service.step()  # the first poll of a process lists the whole prefix
    assert listed.take() == [f"ep{i:04d}.fits" for i in range(5)]
    now[0] += 10
    service.step()
    assert listed.take() == [] and listed.calls == 2  # asked again, told nothing: nothing re-listed
    assert client.store.get_trigger("landing").cursor == f"{bucket}/incoming/ep0004.fits"
    fs.pipe(f"{bucket}/incoming/ep0005.fits", b"x")
    fs.pipe(f"{bucket}/incoming/ep0006.fits", b"x")
    now[0] += 10
    service.step()
    assert listed.take() == ["ep0005.fits", "ep0006.fits"]
    fs.pipe(f"{bucket}/incoming/ep0005a.fits", b"x")  # finished after ep0006 (parallel puts)
    now[0] += 2
    service.step()  # the cursor trails by overlap_s: this poll lists the last 5 s again
    assert listed.take() == ["ep0005.fits", "ep0005a.fits", "ep0006.fits"]
    now[0] += 10
    service.step()
    assert listed.take() == []
    assert client.store.get_trigger("landing").cursor == f"{bucket}/incoming/ep0006.fits"
    fired = sorted(f.fields["name"] for f in client.store.trigger_history("landing", limit=None))
    assert fired == sorted([f"ep{i:04d}.fits" for i in range(7)] + ["ep0005a.fits"])
    assert len(client.store.list_runs(graph=False)) == 8


def test_a_key_sorting_before_the_cursor_is_fired_by_the_full_listing_exactly_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyweave.storage.s3 import filesystem

    bucket = new_bucket(monkeypatch)
    fs = filesystem()
    client.store.save_trigger(on_objects("landing", url=f"s3://{bucket}/incoming/", workflow=f"{FLOW}:nightly",
                                         params={"at": "{url}"}, overlap_s=5, rescan_s=60))
    now = [1_000.0]
    service = TriggerService(client, clock=lambda: now[0])
    fs.pipe(f"{bucket}/incoming/ep0005.fits", b"five")
    service.step()
    fs.pipe(f"{bucket}/incoming/ep0002.fits", b"late")  # sorts before the cursor (ep0005)
    fs.pipe(f"{bucket}/incoming/ep0005.fits", b"five, version 2")  # a new version of the cursor's key
    now[0] += 30
    service.step()

    def fired() -> list[str]:
        return sorted(f.fields["name"] + ":" + f.fields["etag"][:6] for f in client.store.trigger_history(
            "landing", limit=None))

    assert len(fired()) == 1  # within rescan_s only keys after the cursor are listed: the trade-off
    now[0] += 31
    service.step()  # a full listing: both found
    assert len(fired()) == 3 and len(client.store.list_runs(graph=False)) == 3
    now[0] += 61
    service.step()  # listed in full again: nothing twice
    TriggerService(client, clock=lambda: now[0]).step()  # a restarted process lists in full first
    assert len(fired()) == len(set(fired())) == 3 and len(client.store.list_runs(graph=False)) == 3
    assert [f.fields["name"] for f in client.store.trigger_history("landing", limit=None)].count("ep0002.fits") == 1


def test_the_cursor_never_passes_an_object_whose_firing_was_not_recorded(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cursor moves only to a key of a poll recorded whole, with a later poll's firings: a
    store failing between two batches of a poll leaves it where it was, so the next (incremental)
    poll of the same process lists the unrecorded objects again."""
    from skyweave.errors import StoreUnavailableError
    from skyweave.storage.s3 import filesystem
    from skyweave.triggers import service as service_module

    bucket = new_bucket(monkeypatch)
    fs = filesystem()
    client.store.save_trigger(on_objects("landing", url=f"s3://{bucket}/incoming/", workflow=f"{FLOW}:nightly",
                                         params={"at": "{url}"}, overlap_s=5, rescan_s=600))
    for i in range(5):
        fs.pipe(f"{bucket}/incoming/ep{i:04d}.fits", b"x")
    monkeypatch.setattr(service_module, "BATCH", 2)
    real = client.store.record_firings
    calls = [0]

    def failing_second(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise StoreUnavailableError("the store went away between two batches")
        return real(*args, **kwargs)

    monkeypatch.setattr(client.store, "record_firings", failing_second)
    now = [1_000.0]
    service = TriggerService(client, clock=lambda: now[0])
    service.step()  # logged, not raised: the trigger process goes on
    assert len(client.store.trigger_history("landing", limit=None)) == 2
    assert client.store.get_trigger("landing").cursor is None
    now[0] += 20
    service.step()  # the same process, an incremental poll from the stored cursor
    names = [r.params["at"].rsplit("/", 1)[-1] for r in client.store.list_runs(graph=False)]
    assert sorted(names) == [f"ep{i:04d}.fits" for i in range(5)]
    now[0] += 20
    service.step()
    assert client.store.get_trigger("landing").cursor == f"{bucket}/incoming/ep0004.fits"
