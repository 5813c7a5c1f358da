"""A store file that is not a skyweave store is refused by every command, and only ``skyweave init
--force`` replaces it, moving it aside (issue 11, point 5: a truncated ``skyweave.db`` was shown as
an empty store and written over, orphaning the product files)."""

from __future__ import annotations

from pathlib import Path

from .helpers import CLI, WORKFLOWS, flat


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_truncated_store_is_refused_until_init_force(cli: CLI) -> None:
    run = cli("run", f"{WORKFLOWS / 'basic.py'}:simple", "--json").ok().json()
    assert run["products"] == 3
    db = cli.store / "skyweave.db"
    for sidecar in ("skyweave.db-wal", "skyweave.db-shm"):
        (cli.store / sidecar).unlink(missing_ok=True)
    db.write_bytes(b"")  # truncated, as by a full disk or a careless `> skyweave.db`
    before = files_under(cli.store)
    assert sum(1 for name in before if name.startswith("products/")) == 3

    for args in (["runs"], ["run", f"{WORKFLOWS / 'basic.py'}:simple"], ["init"]):
        res = cli(*args)
        assert res.code == 4, (args, res.out, res.err)
        assert "Traceback" not in res.err and res.err.count("error:") == 1
        text = flat(res.err)
        assert f"{db} is empty (0 bytes): it is not a skyweave store" in text
        assert "skyweave init --force" in text
    assert files_under(cli.store) == before  # nothing written, nothing orphaned

    done = cli.json("init", "--force")
    aside = done["moved_aside"][str(db)]
    assert done["created"] and Path(aside).read_bytes() == b"" and Path(aside).parent == cli.store
    assert cli.json("runs") == []
    products = {k: v for k, v in files_under(cli.store).items() if k.startswith("products/")}
    assert products == {k: v for k, v in before.items() if k.startswith("products/")}


def test_init_makes_a_store_and_leaves_an_existing_one_alone(cli: CLI) -> None:
    made = cli("init").ok()
    assert f"created a new store at sqlite:///{cli.store / 'skyweave.db'}" in flat(made.out)
    again = cli("init", "--force").ok()
    assert "is already a skyweave store; nothing changed" in flat(again.out)
    assert sorted(p.name for p in cli.store.iterdir() if "replaced" in p.name) == []


def test_someone_elses_file_is_moved_aside_not_deleted(cli: CLI) -> None:
    notes = cli.cwd / "notes.db"
    notes.write_bytes(b"my observing notes\n")
    other = CLI(cli.cwd, notes)
    res = other("runs")
    assert res.code == 4 and "is not a skyweave store (file is not a database)" in flat(res.err)
    moved = other.json("init", "--force")["moved_aside"]
    assert Path(moved[str(notes)]).read_bytes() == b"my observing notes\n"
    assert other.json("runs") == []
