"""``bench check`` as CI calls it: the table or JSON, each documented exit code, and no store ever written."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.storage import Store
from tests.bench.result_stores import Cell, add_run, store_with

REF = [Cell("1" * 30 + "0" * 10, "1" * 20 + "0" * 20), Cell("1" * 36 + "0" * 4, "0" * 40, defense="none")]
#: AAA's robust outcomes with 12 more examples surviving: what a weakened attack looks like.
WEAKER = [Cell(REF[0].clean, "1" * 32 + "0" * 8), REF[1]]


def check(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    return result.exit_code, result.output


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def reference(tmp_path: Path) -> Path:
    return store_with(tmp_path / "reference.db", REF)


def test_an_unchanged_run_passes_with_a_table_of_every_row(tmp_path: Path, reference: Path) -> None:
    run = store_with(tmp_path / "run.db", REF)
    before = (digest(reference), digest(run))
    code, output = check("--db", run, "--baseline", reference)
    assert code == 0, output
    assert "4 rows of the same jobs compared at level 0.05, holm-corrected" in output
    assert output.count("mcnemar -0/+0") == 4
    assert output.rstrip().endswith("exit 0: ok: no row changed beyond chance")
    assert (digest(reference), digest(run)) == before


def test_a_weaker_attack_fails_and_json_says_which_rows(tmp_path: Path, reference: Path) -> None:
    run = store_with(tmp_path / "run.db", WEAKER)
    code, output = check("--db", run, "--baseline", reference, "--json")
    assert code == 1
    report = json.loads(output)
    assert (report["exit_code"], report["result"], report["correction"]) == (1, "regression", "holm")
    failing = [c for c in report["compared"] if c["status"] == "regression"]
    assert [(c["defense"], c["metric"], c["gained"], c["lost"]) for c in failing] == [
        ("aaa", "robust_accuracy", 12, 0)
    ]
    assert report["current"]["source"] == str(run) and report["baseline"]["run_id"] == 1


def test_the_run_is_chosen_by_id_or_matrix_the_reference_by_matrix(tmp_path: Path, reference: Path) -> None:
    store = Store(tmp_path / "run.db")
    add_run(store, WEAKER, "gate")
    add_run(store, [Cell("1" * 10, "0" * 10, defense="bits")], "other")
    store.engine.dispose()
    code, output = check("--db", store.path, "--baseline", reference)  # the latest run is of "other"
    assert code == 3 and "holds no run of matrix 'other'" in output
    assert check("--db", store.path, "--matrix", "gate", "--baseline", reference)[0] == 1
    code, output = check("--db", store.path, "--run", "1", "--baseline", reference, "--baseline-run", "1")
    assert code == 1 and "against reference run 1 (gate, abc1234, done)" in output


def test_no_overlap_exits_3(tmp_path: Path, reference: Path) -> None:
    other_matrix = store_with(tmp_path / "other.db", REF, matrix="other")
    code, output = check("--db", other_matrix, "--baseline", reference)
    assert code == 3 and "no overlap" in output and "holds no run of matrix 'other'" in output
    disjoint = store_with(tmp_path / "disjoint.db", [Cell("1" * 10, "0" * 10, defense="bits")])
    code, output = check("--db", disjoint, "--baseline", reference)
    assert code == 3 and "missing from the run" in output and "new in the run" in output


def test_drift_and_missing_rows_exit_4_with_what_changed(tmp_path: Path, reference: Path) -> None:
    steps = {"attack": "pgd", "params": {"steps": 40}}
    run = store_with(tmp_path / "run.db", [Cell(REF[0].clean, REF[0].robust, config=steps)])
    code, output = check("--db", run, "--baseline", reference)
    assert code == 4, output
    assert "config drift, not compared" in output and "attack config params.steps: 20 → 40" in output
    assert "missing from the run (in the reference only):\n  none [-] -> C, linf 0.3, pgd20" in output


@pytest.mark.parametrize("content", [b"", b"junk"])
def test_bad_input_exits_2_and_creates_nothing(tmp_path: Path, reference: Path, content: bytes) -> None:
    run = store_with(tmp_path / "run.db", REF)
    code, output = check("--db", tmp_path / "absent.db", "--baseline", reference)
    assert code == 2 and "error: no results store at" in output
    assert not (tmp_path / "absent.db").exists()
    (tmp_path / "bad.db").write_bytes(content)
    assert check("--db", run, "--baseline", tmp_path / "bad.db")[0] == 2
    code, output = check("--db", run, "--baseline", run)
    assert code == 2 and "are the same file" in output
    assert check("--db", run, "--baseline", reference, "--baseline-run", "7")[0] == 2
    assert check("--db", run, "--baseline", reference, "--level", "1.5")[0] == 2


def test_a_baseline_from_newer_code_exits_2(tmp_path: Path, reference: Path) -> None:
    with sqlite3.connect(reference) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    code, output = check("--db", store_with(tmp_path / "run.db", REF), "--baseline", reference)
    assert code == 2 and "newer than this code knows" in output


def test_the_default_baseline_is_results_db_and_it_is_never_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = store_with(tmp_path / "run.db", REF)
    monkeypatch.chdir(tmp_path)
    code, output = check("--db", run)
    assert code == 2 and "no results store at results.db" in output
    assert not (tmp_path / "results.db").exists()
