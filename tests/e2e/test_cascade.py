"""A cascade end to end on a tiny MNIST matrix: each attack runs only on what the one before it left robust,
reports what it ran on and broke, a larger radius counts what a smaller one broke, and a killed cascade
resumes. Cheap attacks (FGSM, 5-step PGD) stand in for the standard protocol's, whose expansion into jobs
is tested at plan level (tests/bench/test_plan.py)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import Result

from bench.api import JobContext, Pipeline, Threat
from bench.attacks.pgd import PGD
from tests.e2e.tiny import bench_run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_thread")]

MATRIX: dict[str, Any] = {
    "name": "cascade",
    "scale": "reduced for tests: 2,000 training images, 1 epoch, 64 evaluation images",
    "classifiers": {"B": {"arch": "mnist-b", "dataset": "mnist", "train": {"epochs": 1, "n_train": 2000}}},
    "defenses": {"none": {"kind": "none"}},
    # Small radii leave a tiny undefended model some robust examples for each attack to work on.
    "threats": {"linf": {"norm": "linf", "epsilons": [0.05, 0.1]}},
    "attacks": {"fgsm": {"kind": "fgsm"}, "pgd": {"kind": "pgd", "params": {"steps": 5}}},
    "evaluation": {"n_eval": 64, "batch_size": 64, "checks": False, "cascade": ["fgsm", "pgd"]},
    "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["B"]}],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store and artifacts folder for the module: matrices that differ only in their radii share the
    trained classifier (same job key), which keeps the module fast."""
    return tmp_path_factory.mktemp("cascade")


def run(store: Path, data_dir: Path, epsilons: list[float]) -> Result:
    matrix = {**MATRIX, "threats": {"linf": {"norm": "linf", "epsilons": epsilons}}}
    path = store / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return bench_run(path, store / "r.db", store / "artifacts", data_dir, catch_exceptions=False)


def query(store: Path, sql: str) -> list[Any]:
    with sqlite3.connect(store / "r.db") as conn:
        return conn.execute(sql).fetchall()


def rows(store: Path, eps: float) -> dict[tuple[str, str], str]:
    """(attack, metric) -> per-example outcomes of the rows at ``eps``."""
    found = query(store, f"select attack, metric, outcomes from results where abs(epsilon - {eps}) < 1e-9")
    return {(attack, metric): outcomes for attack, metric, outcomes in found}


def metrics(store: Path, label: str) -> dict[str, Any]:
    (found,) = query(store, f"select metrics from jobs where label = '{label}'")
    out: dict[str, Any] = json.loads(found[0])
    return out


def both(a: str, b: str) -> str:
    return "".join("1" if x == y == "1" else "0" for x, y in zip(a, b, strict=True))


def test_each_attack_runs_on_what_the_one_before_left_and_says_so(store: Path, data_dir: Path) -> None:
    result = run(store, data_dir, [0.05, 0.1])
    assert result.exit_code == 0, result.output
    for eps in (0.05, 0.1):
        got = rows(store, eps)
        # The cascade's first attack ran on every clean-correct example, so its number is its own; the next
        # ran on survivors only and writes no robust_accuracy row that would read as its own number.
        assert set(got) == {
            ("fgsm", "clean_accuracy"), ("fgsm", "robust_accuracy"),
            ("pgd", "clean_accuracy"), ("pgd", "cascade_robust_accuracy"),
            ("worst-case", "clean_accuracy"), ("worst-case", "robust_accuracy"),
        }
        clean = got[("fgsm", "clean_accuracy")].count("1")
        after_fgsm = got[("fgsm", "robust_accuracy")].count("1")
        after_pgd = got[("pgd", "cascade_robust_accuracy")].count("1")
        fgsm = metrics(store, f"fgsm linf eps={eps:g}: none -> B")
        pgd = metrics(store, f"pgd linf eps={eps:g}: none -> B")
        assert (fgsm["run_on"], fgsm["broke"], fgsm["cascade"]) == (clean, clean - after_fgsm, False)
        assert (pgd["run_on"], pgd["broke"], pgd["cascade"]) == (after_fgsm, after_fgsm - after_pgd, True)
        assert pgd["broke"] > 0 and pgd["run_on"] < fgsm["run_on"], "the matrix must leave each attack work"
        assert both(got[("pgd", "cascade_robust_accuracy")], got[("fgsm", "robust_accuracy")]) == got[
            ("pgd", "cascade_robust_accuracy")
        ], "pgd ran only on what fgsm left robust"
    # The cell at 0.1 is its own cascade's survivors less what the cascade at 0.05 broke.
    small, large = rows(store, 0.05), rows(store, 0.1)
    expected = both(large[("pgd", "cascade_robust_accuracy")], small[("pgd", "cascade_robust_accuracy")])
    assert large[("worst-case", "robust_accuracy")] == expected
    assert small[("worst-case", "robust_accuracy")] == small[("pgd", "cascade_robust_accuracy")]


def test_a_larger_radius_counts_what_a_smaller_one_broke_and_names_the_attacks_that_missed(
    store: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    perturb = PGD.perturb

    def blind_beyond_006(
        self: PGD, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        """Test-only: an attack that finds nothing at the larger radius, as a masked gradient would."""
        return x.clone() if threat.eps > 0.06 else perturb(self, pipeline, x, y, threat, ctx)

    monkeypatch.setattr(PGD, "perturb", blind_beyond_006)  # FGSM is a one-step PGD
    result = run(store, data_dir, [0.05, 0.12])
    assert result.exit_code == 0, result.output
    small, large = rows(store, 0.05), rows(store, 0.12)
    assert large[("pgd", "cascade_robust_accuracy")] == large[("pgd", "clean_accuracy")]  # broke nothing
    assert large[("worst-case", "robust_accuracy")] == small[("pgd", "cascade_robust_accuracy")]
    ((passed, detail),) = query(
        store,
        "select f.passed, f.detail from flags f join jobs j on f.job_key = j.key "
        "where f.\"check\" = 'missed-counterexamples' and j.label = 'cell linf eps=0.12: none -> B'",
    )
    clean, left = small[("fgsm", "clean_accuracy")], small[("pgd", "cascade_robust_accuracy")]
    broken_small = clean.count("1") - left.count("1")
    assert not passed
    assert detail.startswith(f"fgsm, pgd left {broken_small} example(s) robust")
    # The attacks at the smaller radius that broke them, each with how many.
    credited = re.findall(r"(fgsm|pgd) at eps=0.05 \((\d+)\)", detail)
    assert credited and sum(int(k) for _, k in credited) == broken_small
    # The per-attack table marks both of the cell's attacks unreliable.
    unreliable = metrics(store, "cell linf eps=0.12: none -> B")["unreliable_attacks"]
    assert unreliable == {"fgsm": ["missed-counterexamples"], "pgd": ["missed-counterexamples"]}


def test_a_cascade_killed_part_way_resumes_with_what_it_finished(
    store: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    perturb = PGD.perturb

    def killed(
        self: PGD, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        if type(self) is PGD:
            raise KeyboardInterrupt  # test-only: stands for the run being killed in the cascade's second step
        return perturb(self, pipeline, x, y, threat, ctx)

    with monkeypatch.context() as m:
        m.setattr(PGD, "perturb", killed)
        killed_run = run(store, data_dir, [0.08])
    assert killed_run.exit_code == 1 and "Aborted" in killed_run.output
    assert query(store, "select status from runs order by id desc limit 1") == [("interrupted",)]
    fgsm = query(store, "select ended_at from jobs where label = 'fgsm linf eps=0.08: none -> B'")
    resumed = run(store, data_dir, [0.08])
    assert resumed.exit_code == 0, resumed.output
    assert "ran 2 jobs, 3 already complete" in resumed.output  # pgd and the cell; fgsm was not redone
    assert query(store, "select ended_at from jobs where label = 'fgsm linf eps=0.08: none -> B'") == fgsm
