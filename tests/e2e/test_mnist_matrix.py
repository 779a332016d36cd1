"""End to end on real MNIST subsets: matrix -> jobs -> SQLite rows -> HTML, resume and bad input."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from bench.cli import main
from tests.e2e.tiny import MATRIX, bench_run

pytestmark = pytest.mark.e2e


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_matrix(tmp: Path, data_dir: Path, matrix: dict[str, Any], *extra: str) -> Result:
    path = tmp / f"{matrix['name']}.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return bench_run(path, tmp / "r.db", tmp / "artifacts", data_dir, *extra, catch_exceptions=False)


def count(db: Path, sql: str) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, Result]:
    tmp = tmp_path_factory.mktemp("e2e")
    return tmp, run_matrix(tmp, data_dir, MATRIX)


def test_run_writes_rows_with_intervals(first_run: tuple[Path, Result]) -> None:
    tmp, result = first_run
    assert result.exit_code == 0, result.output
    db = tmp / "r.db"
    # 2 classifiers, 2 front-ends, 4 pipelines x 2 attacks, 4 cells
    assert count(db, "select kind, count(*) from jobs where status='done' group by kind order by kind") == [
        ("attack", 8),
        ("cell", 4),
        ("train-classifier", 2),
        ("train-defense", 2),
    ]
    rows = count(db, "select metric, n, value, ci_low, ci_high, scale from results")
    assert len(rows) == 24
    for _metric, n, value, low, high, scale in rows:
        assert n == 64 and 0 <= low <= value <= high <= 1
        assert scale.startswith("reduced: ") and "evaluated on 64 of 10000" in scale
    undefended = count(
        db,
        "select value from results where defense='none' and attack='worst-case' and metric='robust_accuracy'",
    )
    assert all(v <= 0.1 for (v,) in undefended), "an undefended MNIST model must fall at eps=0.3"
    assert "worst case over all attacks" in result.output


def test_worst_case_is_per_example_over_attacks(first_run: tuple[Path, Result]) -> None:
    tmp, _ = first_run
    db = tmp / "r.db"
    cells = count(
        db,
        "select target, defense, outcomes from results where attack='worst-case' "
        "and metric='robust_accuracy'",
    )
    for target, defense, worst in cells:
        per_attack = count(
            db,
            f"select outcomes from results where attack!='worst-case' and metric='robust_accuracy' "
            f"and target='{target}' and defense='{defense}'",
        )
        expect = "".join("1" if all(o[i] == "1" for (o,) in per_attack) else "0" for i in range(len(worst)))
        assert worst == expect


def test_second_run_does_no_work(first_run: tuple[Path, Result], data_dir: Path) -> None:
    tmp, _ = first_run
    before = count(tmp / "r.db", "select count(*) from results")
    again = run_matrix(tmp, data_dir, MATRIX)
    assert again.exit_code == 0, again.output
    assert "ran 0 jobs, 16 already complete" in again.output
    assert count(tmp / "r.db", "select count(*) from results") == before


def test_report_renders_the_run(first_run: tuple[Path, Result]) -> None:
    tmp, _ = first_run
    out = tmp / "site"
    result = invoke("report", "--db", tmp / "r.db", "--out", out)
    assert result.exit_code == 0, result.output
    pages = {p.name: p.read_text() for p in out.glob("*.html")}
    assert "index.html" in pages and "leaderboard.html" in pages
    matrix_page = next(text for name, text in pages.items() if "tiny-mnist" in name)
    assert "aaa" in matrix_page and "%" in matrix_page
    for text in pages.values():
        assert "https://" not in text.split("<body", 1)[0], "no external resources in the page head"


def test_bad_input_stops_and_keeps_earlier_results(first_run: tuple[Path, Result], data_dir: Path) -> None:
    tmp, _ = first_run
    db = tmp / "r.db"
    before = count(db, "select job_key, metric, value from results order by job_key, metric")
    broken = {**MATRIX, "name": "broken", "threats": {"linf": {"norm": "linf", "epsilons": [1.5]}}}
    result = bench_run(_write(tmp, broken), db, tmp / "artifacts", data_dir)
    assert result.exit_code == 2
    assert "threats.linf.epsilons[0]" in result.output and "exceeds 1" in result.output
    missing = bench_run(_write(tmp, {**MATRIX, "name": "nodata"}), db, tmp / "artifacts", tmp / "empty")
    assert missing.exit_code == 2
    assert "dataset 'mnist' not found" in missing.output and "--download" in missing.output
    assert count(db, "select job_key, metric, value from results order by job_key, metric") == before
    assert count(db, "select count(*) from runs where matrix_name in ('broken', 'nodata')") == [(0,)]


def _write(tmp: Path, matrix: dict[str, Any]) -> Path:
    path = tmp / f"{matrix['name']}.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return path
