"""Setting up a store is all or nothing and serialized across processes: a kill during setup leaves nothing a
rerun cannot complete, runs started together on a new file all succeed, and a database that is not a store
is refused untouched."""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from bench.errors import BenchError
from bench.storage import Store
from bench.storage.models import Base
from bench.storage.store import MIGRATIONS, StoreLockedError
from tests.bench.storage.processes import digest, finish, python, wait_for
from tests.bench.storage.test_store import start

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()

#: Opens a store and pauses for good after its third CREATE TABLE, having said so in a marker file.
PAUSE_IN_SETUP = """
import sys, time
from pathlib import Path
from sqlalchemy import Engine, event
from bench.storage import Store

created = []

@event.listens_for(Engine, "after_cursor_execute")
def pause(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        created.append(statement)
        if len(created) == 3:
            Path(sys.argv[2]).touch()
            time.sleep(600)

Store(sys.argv[1])
"""

#: Says it is ready (imports take long on a busy machine), waits for the start signal, then opens a (new)
#: store and starts a run in it.
OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from bench.storage import Store

Path(sys.argv[3]).touch()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
store = Store(sys.argv[1])
print(store.start_run(matrix_name="m", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={},
                      git_commit=None, versions={}, device="cpu"))
"""


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def assert_complete(path: Path) -> None:
    store = Store(path)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


def test_a_run_killed_during_setup_leaves_nothing_and_the_next_one_completes_it(tmp_path: Path) -> None:
    db, paused = tmp_path / "r.db", tmp_path / "paused"
    proc = python(PAUSE_IN_SETUP, str(db), str(paused))
    wait_for(paused, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tables(db) == set(), "the tables it had created were never committed"
    with pytest.raises(BenchError, match="holds no results"):
        Store.open_readonly(db)
    assert_complete(db)
    store = Store(db)
    assert start(store) == 1


def test_runs_started_together_on_a_new_database_all_succeed(tmp_path: Path) -> None:
    db, go = tmp_path / "r.db", tmp_path / "go"
    procs = [python(OPEN_AT_ONCE, str(db), str(go), str(tmp_path / f"ready{i}")) for i in range(4)]
    for i, proc in enumerate(procs):
        wait_for(tmp_path / f"ready{i}", proc)
    go.touch()
    outcomes = [finish(p) for p in procs]
    assert [rc for rc, _ in outcomes] == [0] * 4, [out for _, out in outcomes]
    assert sorted(int(out.split()[-1]) for _, out in outcomes) == [1, 2, 3, 4]
    assert_complete(db)


def test_a_new_file_another_process_is_writing_is_waited_for_then_set_up(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once, ignoring the busy timeout, while another connection holds a
    new file's write lock: the race behind the test above, made deterministic."""
    db = tmp_path / "r.db"
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, other.execute, ("ROLLBACK",))
    release.start()
    try:
        store = Store(db, busy_timeout_s=10)
    finally:
        release.join()
        other.close()
    assert start(store) == 1
    assert_complete(db)


def test_a_new_file_locked_past_the_busy_timeout_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreLockedError, match=r"waited 0.2 s\) while setting up its schema"):
        Store(db, busy_timeout_s=0.2)
    other.execute("ROLLBACK")
    other.close()
    assert_complete(db)


def test_what_an_older_release_left_when_killed_during_setup_is_set_up_again(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, matrix_name VARCHAR(200))")
    assert_complete(db)


def test_a_half_set_up_store_with_rows_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, matrix_name VARCHAR(200))")
        conn.execute("INSERT INTO runs VALUES (1, 'm')")
    before = digest(tmp_path)
    with pytest.raises(BenchError, match="setup never finished .* holds rows in runs"):
        Store(db)
    assert digest(tmp_path) == before


def test_a_foreign_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = digest(tmp_path)
    with pytest.raises(BenchError, match=r"not a Frontline results store: it holds other tables \(notes\)"):
        Store(db)
    assert tables(db) == {"notes"} and digest(tmp_path) == before


def test_a_store_from_newer_code_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    Store(db).engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(BenchError, match="schema revision this code does not know"):
        Store(db)


def test_a_store_locked_by_another_process_is_a_clear_error_after_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = Store(db, busy_timeout_s=0.2)
    start(store)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreLockedError, match=r"locked by another process \(waited 0.2 s\)"):
        start(store)
    with pytest.raises(StoreLockedError, match="while setting up its schema"):
        Store(db, busy_timeout_s=0.2)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert start(store) == 2, "the refused write left nothing behind, and the store works on"
    assert [r.id for r in store.runs()] == [1, 2]


def test_a_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BenchError, match="cannot create the folder of results store"):
        Store(tmp_path / "file" / "sub" / "r.db")
