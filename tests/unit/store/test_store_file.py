"""What may be at a store's path (SQLite): a new store is created whole; an empty file or any file
that is not a skyweave store is refused untouched unless ``init_store(force=True)`` moves it aside
(issue 11, point 5: a truncated ``skyweave.db`` was silently treated as a new store)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from skyweave.errors import NotAStoreError, StoreError
from skyweave.model.records import Changeset, RunRecord
from skyweave.store import init_store, open_store

NOW = datetime(2026, 12, 6, 7, 0, 0, tzinfo=UTC)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def a_store_with_a_run(folder: Path) -> None:
    store = open_store(str(folder))
    store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="succeeded")]))
    store.close()


def test_an_empty_store_file_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "skyweave.db").touch()
    for given in (str(tmp_path), str(tmp_path / "skyweave.db"), f"sqlite:///{tmp_path / 'skyweave.db'}"):
        with pytest.raises(NotAStoreError) as caught:
            open_store(given)
        assert caught.value.message.startswith(f"{tmp_path / 'skyweave.db'} is empty (0 bytes)")
        assert "truncated" in caught.value.message and "skyweave init --force" in (caught.value.hint or "")
        assert caught.value.details["path"] == str(tmp_path / "skyweave.db")
    assert listing(tmp_path) == {"skyweave.db": b""}


def test_an_empty_file_with_a_wal_beside_it_says_to_keep_the_wal(tmp_path: Path) -> None:
    (tmp_path / "skyweave.db").touch()
    (tmp_path / "skyweave.db-wal").write_bytes(b"w" * 32)
    with pytest.raises(NotAStoreError, match=r"skyweave.db-wal \(32 bytes\) beside it \(keep them"):
        open_store(str(tmp_path))
    assert listing(tmp_path) == {"skyweave.db": b"", "skyweave.db-wal": b"w" * 32}


def test_an_empty_sqlite_database_is_not_a_store_either(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 7")  # a database with a header and no tables
    connection.close()
    before = path.read_bytes()
    with pytest.raises(NotAStoreError, match="is an empty SQLite database, not a skyweave store"):
        open_store(str(path))
    assert path.read_bytes() == before


def test_init_refuses_what_is_not_a_store_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "skyweave.db").write_bytes(b"")
    (tmp_path / "skyweave.db-wal").write_bytes(b"old wal")
    with pytest.raises(NotAStoreError):
        init_store(str(tmp_path))
    assert listing(tmp_path) == {"skyweave.db": b"", "skyweave.db-wal": b"old wal"}

    done = init_store(str(tmp_path), force=True, now=NOW)
    done.store.close()
    aside = tmp_path / "skyweave.db.replaced-20261206T070000Z"
    assert done.created
    assert done.moved_aside == {str(tmp_path / "skyweave.db"): str(aside),
                                str(tmp_path / "skyweave.db-wal"): f"{aside}-wal"}
    assert aside.read_bytes() == b"" and Path(f"{aside}-wal").read_bytes() == b"old wal"
    reopened = open_store(str(tmp_path))  # a real, empty store: the old WAL was not replayed into it
    assert reopened.list_runs() == []
    reopened.close()


def test_init_leaves_a_store_as_it_is_even_when_forced(tmp_path: Path) -> None:
    a_store_with_a_run(tmp_path)
    for force in (False, True):
        done = init_store(str(tmp_path), force=force)
        assert not done.created and done.moved_aside == {}
        assert [r.id for r in done.store.list_runs()] == ["run-1"]
        done.store.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "replaced" in p.name) == []


def test_init_creates_a_missing_store_and_never_moves_a_directory(tmp_path: Path) -> None:
    done = init_store(str(tmp_path / "new"))
    done.store.close()
    assert done.created and (tmp_path / "new" / "skyweave.db").is_file()
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        init_store(f"sqlite:///{tmp_path / 'dir.db'}", force=True)
    assert (tmp_path / "dir.db").is_dir()


def test_a_second_forced_init_in_the_same_second_keeps_both_old_files(tmp_path: Path) -> None:
    for content in (b"", b"not a database at all"):
        (tmp_path / "skyweave.db").unlink(missing_ok=True)
        (tmp_path / "skyweave.db-wal").unlink(missing_ok=True)
        (tmp_path / "skyweave.db-shm").unlink(missing_ok=True)
        (tmp_path / "skyweave.db").write_bytes(content)
        init_store(str(tmp_path), force=True, now=NOW).store.close()
    assert (tmp_path / "skyweave.db.replaced-20261206T070000Z").read_bytes() == b""
    assert (tmp_path / "skyweave.db.replaced-20261206T070000Z-2").read_bytes() == b"not a database at all"


def test_processes_creating_one_store_at_once_all_open_the_same_one(tmp_path: Path) -> None:
    """A store is linked into place whole: nobody meets a half-made (empty) file and refuses it."""
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_and_write(n: int) -> None:
        try:
            barrier.wait()
            store = open_store(str(tmp_path / "st"))
            store.apply(Changeset(runs=[RunRecord(id=f"run-{n}", workflow="w", state="running")]))
            store.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = open_store(str(tmp_path / "st"))
    assert sorted(r.id for r in store.list_runs()) == [f"run-{n}" for n in range(6)]
    store.close()
    assert [p.name for p in (tmp_path / "st").iterdir() if p.name.startswith(".")] == []  # no partial file
