"""Common-corruption accuracy as part of a matrix, on real MNIST: rows, intervals and the report section."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import main
from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.e2e


def test_corruption_rows_and_report(tmp_path: Path, data_dir: Path) -> None:
    matrix = {
        "name": "corrupt",
        "classifiers": {
            "C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 1, "n_train": 2000}}
        },
        "defenses": {"none": {"kind": "none"}},
        "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
        "attacks": {"fgsm": {"kind": "fgsm"}},
        "evaluation": {"n_eval": 100, "checks": False},
        "corruptions": {"names": ["gaussian_noise", "contrast"], "severities": [1, 5]},
        "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["C"]}],
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    db = tmp_path / "r.db"
    result = bench_run(path, db, tmp_path / "a", data_dir)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select attack, epsilon, value, ci_low, ci_high, n from results "
            "where metric='corrupted_accuracy' order by attack, epsilon"
        ).fetchall()
        clean = conn.execute(
            "select value from results where metric='clean_accuracy' and norm='corruption'"
        ).fetchall()
    assert [(a, e) for a, e, *_ in rows] == [
        ("contrast", 1),
        ("contrast", 5),
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
    ]
    for _, _, value, low, high, n in rows:
        assert n == 100 and low <= value <= high
    by = {(a, e): v for a, e, v, *_ in rows}
    assert by[("contrast", 5)] < clean[0][0], "the strongest contrast corruption must cost accuracy"
    out = tmp_path / "site"
    assert CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(out)]).exit_code == 0
    page = next(out.glob("matrix-corrupt-*.html")).read_text()
    assert "Common corruptions" in page and "gaussian_noise" in page


def test_unknown_corruption_is_a_config_error(tmp_path: Path, data_dir: Path) -> None:
    matrix = {
        "name": "corrupt-bad",
        "classifiers": {"C": {"arch": "mnist-c", "dataset": "mnist"}},
        "defenses": {"none": {"kind": "none"}},
        "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
        "attacks": {"fgsm": {"kind": "fgsm"}},
        "corruptions": {"names": ["gaussian_nois"], "severities": [6]},
        "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["C"]}],
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    result = CliRunner().invoke(main, ["validate", "--matrix", str(path), "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert (
        "corruptions.names[0]: unknown corruption 'gaussian_nois'; did you mean 'gaussian_noise'"
        in result.output
    )
    assert "corruptions.severities[0]: severity must be one of [1, 2, 3, 4, 5], got 6" in result.output
