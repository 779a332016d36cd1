"""Reading result rows without writing: provenance and labels per row, the store never touched, bad input
refused with a message naming the problem."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from bench.results_table import COLUMNS, NoRunError, StoreReadError, read_rows
from bench.storage import Store
from bench.storage.store import MIGRATIONS
from tests.bench.result_stores import (
    CLASSIFIER_CONFIG,
    FRONTEND_CONFIG,
    Cell,
    add_run,
    config_key,
    store_with,
)

CELLS = [Cell("1111011111", "1010000110"), Cell("1111111110", "0000000000", defense="none")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_row_per_result_with_its_run_labels_and_upstream_jobs(tmp_path: Path) -> None:
    frame = read_rows(store_with(tmp_path / "r.db", CELLS))
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 4  # two cells, a clean and a robust row each
    row = frame[(frame.defense == "aaa") & (frame.metric == "robust_accuracy")].iloc[0]
    assert (row.run_id, row.matrix, row.git_commit, row.run_status) == (1, "gate", "abc1234", "done")
    assert (row.guides, row.target, row.threat, row.eps, row.attack) == (["C"], "C", "linf", 0.3, "pgd20")
    assert (row.n, row.successes, row.value, row.outcomes) == (10, 4, 0.4, "1010000110")
    assert row.ci_low < 0.4 < row.ci_high
    assert row.scale == "reduced: evaluated on 10 of 10000 mnist test images"
    assert row.config == {"attack": "pgd", "params": {"steps": 20}}
    assert (row.frontend_job, row.frontend_config) == (config_key(FRONTEND_CONFIG), FRONTEND_CONFIG)
    assert (row.classifier_job, row.classifier_config) == (config_key(CLASSIFIER_CONFIG), CLASSIFIER_CONFIG)
    assert row.computed_in_run == 1 and row.run_started_at.startswith("20")


def test_reading_leaves_the_store_as_it_was_even_at_an_older_schema(tmp_path: Path) -> None:
    path = store_with(tmp_path / "r.db", CELLS)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    store = Store(path)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    store.engine.dispose()
    before = digest(path)
    frame = read_rows(path)
    assert len(frame) == 4 and frame.cost_per_prediction.isna().all()  # a column 0001 did not have
    assert digest(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def test_a_store_from_newer_code_is_refused(tmp_path: Path) -> None:
    path = store_with(tmp_path / "r.db", CELLS)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreReadError, match="schema revision '9999', newer than this code knows"):
        read_rows(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"not a database", "neither a SQLite results store nor a JSON export"),
        (b"[1, 2]", "not a JSON export of results"),
        (b"[", "not a JSON export of results"),
        (b"[]", "export with no rows"),
    ],
)
def test_files_that_hold_no_results_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "r.db"
    path.write_bytes(content)
    with pytest.raises(StoreReadError, match=message):
        read_rows(path)


def test_missing_foreign_and_runless_stores_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreReadError, match="no results store at"):
        read_rows(tmp_path / "absent.db")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE results (x INTEGER)")
    with pytest.raises(StoreReadError, match="not a Frontline results store"):
        read_rows(foreign)
    Store(tmp_path / "fresh.db").engine.dispose()
    with pytest.raises(StoreReadError, match="holds no runs"):
        read_rows(tmp_path / "fresh.db")


def test_runs_are_selected_by_id_or_as_the_latest_of_a_matrix(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = Store(path)
    add_run(store, CELLS[:1], "gate")
    add_run(store, CELLS, "gate")
    add_run(store, CELLS[:1], "other")
    add_run(store, [], "gate", status="failed")
    store.engine.dispose()
    assert sorted(set(read_rows(path).run_id)) == [1, 2, 3]  # run 4 has no rows
    assert set(read_rows(path, matrix="gate").run_id) == {1, 2}
    assert set(read_rows(path, run=1).run_id) == {1}
    with pytest.raises(NoRunError, match="run 4 of .* holds no result rows"):
        read_rows(path, matrix="gate", latest=True)
    with pytest.raises(NoRunError, match=r"no run 9 \(its runs: 1 \(gate\), 2 \(gate\), 3 \(other\)"):
        read_rows(path, run=9)
    with pytest.raises(NoRunError, match="no run of matrix 'absent'"):
        read_rows(path, matrix="absent")
    with pytest.raises(NoRunError, match="of matrix 'other', not 'gate'"):
        read_rows(path, run=3, matrix="gate")


def test_a_json_export_reads_back_as_the_table_it_was_written_from(tmp_path: Path) -> None:
    frame = read_rows(store_with(tmp_path / "r.db", CELLS, CELLS[:1]))
    export = tmp_path / "rows.json"
    export.write_text(json.dumps(frame.to_dict(orient="records")))
    assert read_rows(export).to_dict(orient="records") == frame.to_dict(orient="records")
    assert set(read_rows(export, matrix="gate", latest=True).run_id) == {2}
    records = json.loads(export.read_text())
    assert records[0]["guides"] == ["C"] and records[0]["m"] is None
