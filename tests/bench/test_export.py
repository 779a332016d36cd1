"""``bench export``: every format holds one row per result with its provenance, the JSON reads back exactly
and is the same bytes for the same store, and a path it cannot write is refused without leaving debris."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.errors import BenchError
from bench.export import write_rows
from bench.results_table import COLUMNS, read_rows
from tests.bench.result_stores import Cell, store_with

REPO = Path(__file__).resolve().parents[2]
CELLS = [Cell("1111011111", "1010000110"), Cell("1111111110", "0000000000", defense="none")]


def files(folder: Path) -> list[str]:
    """The folder's files, less SQLite's WAL companions, which a read-only reader of a WAL store leaves."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", *args])
    return result.exit_code, result.output


def test_json_reads_back_exactly_and_is_the_same_bytes_each_time(tmp_path: Path) -> None:
    db = store_with(tmp_path / "r.db", CELLS)
    assert export("--db", str(db), "--format", "json", "--out", str(tmp_path / "a.json")) == (
        0,
        f"wrote 4 rows of run(s) 1 to {tmp_path / 'a.json'}\n",
    )
    assert export("--db", str(db), "--format", "json", "--out", str(tmp_path / "b.json"))[0] == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    records = json.loads((tmp_path / "a.json").read_text())
    assert [list(r) for r in records] == [COLUMNS] * 4
    back = read_rows(tmp_path / "a.json").to_dict(orient="records")
    assert back == read_rows(db).to_dict(orient="records")


def test_csv_holds_one_row_per_result_with_nested_values_as_json(tmp_path: Path) -> None:
    db = store_with(tmp_path / "r.db", CELLS)
    assert export("--db", str(db), "--format", "csv", "--out", str(tmp_path / "r.csv"))[0] == 0
    frame = pd.read_csv(tmp_path / "r.csv", dtype={"outcomes": str})
    assert list(frame.columns) == COLUMNS and len(frame) == 4
    aaa = frame[frame.defense == "aaa"].iloc[0]
    assert json.loads(aaa.guides) == ["C"] and json.loads(aaa.config)["params"] == {"steps": 20}
    assert set(frame.matrix) == {"gate"} and set(frame.git_commit) == {"abc1234"}


def test_parquet_round_trips_through_pandas(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    db = store_with(tmp_path / "r.db", CELLS)
    assert export("--db", str(db), "--format", "parquet", "--out", str(tmp_path / "r.parquet"))[0] == 0
    frame = pd.read_parquet(tmp_path / "r.parquet")
    assert list(frame.columns) == COLUMNS and sorted(frame.successes) == [0, 4, 9, 9]


def test_parquet_without_pyarrow_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # an import of it now fails, installed or not
    frame = read_rows(store_with(tmp_path / "r.db", CELLS))
    with pytest.raises(BenchError, match="parquet export needs pyarrow"):
        write_rows(frame, "parquet", tmp_path / "r.parquet")
    assert files(tmp_path) == ["r.db"]


def test_an_unwritable_path_exits_2_and_leaves_the_old_file(tmp_path: Path) -> None:
    db = store_with(tmp_path / "r.db", CELLS)
    code, output = export("--db", str(db), "--format", "json", "--out", str(db / "rows.json"))
    assert code == 2 and f"error: cannot export to {db / 'rows.json'}" in output
    code, output = export("--db", str(db), "--format", "csv", "--out", str(tmp_path))
    assert code == 2 and "it is a folder" in output
    old = tmp_path / "old.json"
    old.write_text("kept")
    frame = read_rows(db)
    frame["versions"] = [object()] * len(frame)  # json cannot write it: the write fails part-way
    with pytest.raises(TypeError):
        write_rows(frame, "json", old)
    assert old.read_text() == "kept"
    assert files(tmp_path) == ["old.json", "r.db"]


def test_bad_stores_exit_2_with_the_reason(tmp_path: Path) -> None:
    code, output = export("--db", str(tmp_path / "absent.db"), "--format", "json")
    assert code == 2 and "no results store at" in output
    (tmp_path / "empty.db").touch()
    code, output = export("--db", str(tmp_path / "empty.db"), "--format", "json")
    assert code == 2 and "is empty" in output
    assert not (tmp_path / "results.json").exists()


def test_the_committed_quick_rows_are_the_export_of_results_db(tmp_path: Path) -> None:
    """``results.quick.json`` is what the export command in the README writes from ``results.db``."""
    out = tmp_path / "quick.json"
    code, output = export("--db", str(REPO / "results.db"), "--matrix", "quick", "--format", "json",
                          "--out", str(out))
    assert code == 0, output
    assert out.read_text() == (REPO / "results.quick.json").read_text(), (
        "results.quick.json is stale: regenerate it with `bench export --db results.db --matrix quick "
        "--format json --out results.quick.json`"
    )
