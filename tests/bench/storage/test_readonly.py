"""Reading never writes: a reader opens the store read-only, refuses what is not a store without touching it,
and can read a store it may not write, in a read-only folder, or at an older schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from bench.errors import BenchError
from bench.storage import Store
from bench.storage.store import MIGRATIONS
from tests.bench.result_stores import Cell, store_with
from tests.bench.storage.processes import digest, read_only
from tests.bench.storage.test_store import record, start

CELLS = [Cell("1111011111", "1010000110"), Cell("1111111110", "0000000000", defense="none")]

@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty: not a results store"), (b"plain text\n" * 50, "not an SQLite database")],
)
def test_an_empty_or_non_sqlite_file_is_refused_untouched(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "r.db").write_bytes(content)
    with pytest.raises(BenchError, match=message):
        Store.open_readonly(tmp_path / "r.db")
    assert (tmp_path / "r.db").read_bytes() == content and digest(tmp_path).keys() == {"r.db"}


def test_a_foreign_database_is_refused_and_gets_no_tables(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "notes.db") as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = digest(tmp_path)
    with pytest.raises(BenchError, match="not a Frontline results store"):
        Store.open_readonly(tmp_path / "notes.db")
    assert digest(tmp_path) == before


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no results store at"):
        Store.open_readonly(tmp_path / "r.db")
    assert list(tmp_path.iterdir()) == []


def test_a_store_at_an_older_schema_is_read_without_being_upgraded(tmp_path: Path) -> None:
    path = store_with(tmp_path / "r.db", CELLS)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    store = Store(path)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    store.engine.dispose()
    before = digest(tmp_path)
    reader = Store.open_readonly(path)
    assert [r.matrix_name for r in reader.runs()] == ["gate"]
    assert len(reader.all_results()) == 2 * len(CELLS)
    reader.engine.dispose()
    # SQLite's reader may leave an empty write-ahead log and its index beside the file, never a change in it.
    assert digest(tmp_path)["r.db"] == before["r.db"]


def test_a_read_only_store_is_read_and_a_writer_says_why_it_cannot_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    start(store)
    store.engine.dispose()
    with read_only(tmp_path / "r.db"):
        before = digest(tmp_path)["r.db"]
        assert [r.matrix_name for r in Store.open_readonly(tmp_path / "r.db").runs()] == ["m"]
        with pytest.raises(BenchError, match="cannot be written: the file is read-only; `bench run` records"):
            Store(tmp_path / "r.db")
        assert digest(tmp_path)["r.db"] == before


def test_an_archived_store_in_a_read_only_folder_is_read(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    store = Store(archive / "r.db")
    store.record_job(start(store), record("k1", 0.5), [])
    store.engine.dispose()  # the last connection merges the write-ahead log and removes it
    assert sorted(p.name for p in archive.iterdir()) == ["r.db"]
    with read_only(archive / "r.db", archive):
        reader = Store.open_readonly(archive / "r.db")
        assert [r.matrix_name for r in reader.runs()] == ["m"]
        assert len(reader.results_for(["k1"])) == 2
        reader.engine.dispose()
        with pytest.raises(BenchError, match=f"its folder {archive} is read-only"):
            Store(archive / "r.db")
        assert sorted(p.name for p in archive.iterdir()) == ["r.db"]
