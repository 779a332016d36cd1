"""``bench report`` reads the store without writing to it: a foreign database is refused as it is, and a run
whose process died is reported as interrupted with when it was last seen alive."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import update

from bench.cli import main
from bench.storage import Store
from bench.storage.models import Run
from tests.bench.storage.test_store import start


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_foreign_database_is_refused_and_gets_no_tables(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = sha(db)
    result = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is not a Frontline results store" in result.output
    assert sha(db) == before


def test_a_dead_run_is_reported_as_interrupted_without_writing(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(db)
    run = start(store)
    with store.session() as s:
        s.execute(update(Run).where(Run.id == run).values(pid=2**22 + 12345))  # no process has it
    store.engine.dispose()
    before = sha(db)
    result = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "run 1 (matrix 'm'): interrupted: its process 4206649 on" in result.output
    assert "last seen alive" in result.output
    assert sha(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("running",)], "only a writer marks it"
