"""The main example's promise, on a tiny matrix: a cell's worst case is no more than 1 point above
pyautoattack's AutoAttack run directly on the same pipeline and the same examples, checked with the code of
``benchmarks/autoattack_agreement.py``.

The cell is a 1-bit bit-depth front-end (declared non-differentiable, so BPDA applies) before a briefly
trained MNIST classifier, at Linf 0.3 on 20 test images: the protocol breaks some examples and leaves others,
so both sides have work. The matrix runs the standard protocol with one stated reduction
(``evaluation.standard_budget``): AutoAttack's budget (:data:`AA_BUDGET`, which the job's scale notes and the
script's header name), on both sides, so the test stays within a minute on one core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from bench.api import Pipeline, Threat
from bench.artifacts import ArtifactStore
from bench.attacks.autoattack import AutoAttackParams
from bench.config import parse_matrix
from bench.storage import Store
from bench.storage.models import Run
from benchmarks import autoattack_agreement as agreement
from tests.e2e.tiny import bench_run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_thread")]

#: AutoAttack's reduced budget (published: 100 iterations, 5000 Square queries), given to the harness's
#: AutoAttack job and to the direct run alike.
AA_BUDGET = {"n_iter": 20, "n_queries": 500}
N_EVAL = 20


def matrix() -> dict[str, Any]:
    """The standard protocol, AutoAttack at the reduced budget the script also runs (stated in the rows)."""
    return {
        "name": "aa-agreement",
        "scale": "reduced for tests: 2,000 training images, 1 epoch, 20 evaluation images, AutoAttack budget",
        "classifiers": {
            "C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 1, "n_train": 2000}}
        },
        "defenses": {"bits": {"kind": "bit-depth", "params": {"bits": 1}}},
        "threats": {"linf": {"norm": "linf", "epsilons": [0.3]}},
        "evaluation": {
            "n_eval": N_EVAL,
            "batch_size": N_EVAL,
            "checks": False,
            "standard_budget": {"autoattack": AA_BUDGET},
        },
        "experiments": [{"kind": "native", "defenses": ["bits"], "guides": ["C"]}],
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("aa-agreement")
    path = work / "m.yaml"
    path.write_text(yaml.safe_dump(matrix()))
    result = bench_run(path, work / "r.db", work / "artifacts", data_dir, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return work


def script(store: Path, data_dir: Path, *extra: str) -> int:
    budget = [f"--n-iter={AA_BUDGET['n_iter']}", f"--n-queries={AA_BUDGET['n_queries']}"]
    args = ["--db", str(store / "r.db"), "--artifacts", str(store / "artifacts"), "--data-dir", str(data_dir)]
    return agreement.main([*args, *budget, *extra])


def test_worst_case_is_not_above_autoattack_run_directly(
    store: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = store / "agreement.json"
    assert script(store, data_dir, "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "reduced: 20 of 100 APGD/FAB iterations, 500 of 5000 Square queries" in printed
    assert "| bits -> C linf 0.3 | 20 |" in printed
    found = json.loads(out.read_text())
    (cell,) = found["cells"]
    assert cell["n"] == N_EVAL
    # The pipeline was rebuilt exactly: its clean answers are the stored ones.
    assert cell["clean_mismatch"] == 0
    # Both sides had work: AutoAttack broke some clean-correct examples, and some survived the harness.
    assert cell["autoattack_robust"] < cell["clean"]
    assert cell["harness_robust"] > 0
    # Within 1 point on 20 examples (5 points each): no more robust examples than AutoAttack left.
    assert cell["within"] and cell["diff_points"] <= 1.0
    assert cell["harness_robust"] <= cell["autoattack_robust"]


def test_autoattack_points_are_rechecked_not_trusted(
    store: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference run that returns points outside the ball and claims every example broken: the points are
    projected back and counted, and the fresh forward pass, not the claim, decides what is robust."""

    def outside_and_boastful(
        pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, params: AutoAttackParams
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        return (x + 2 * threat.eps).clamp(0, 1), (y + 1) % 10, []

    monkeypatch.setattr(agreement, "reference_autoattack", outside_and_boastful)
    cells, notes = agreement.stored_cells(
        Store(store / "r.db"), ArtifactStore(store / "artifacts"), data_dir, torch.device("cpu")
    )
    assert not notes
    (cell,) = cells
    found = agreement.compare(cell, AutoAttackParams(**AA_BUDGET))
    # Every MNIST image has black pixels, which moved by 2 eps.
    assert found.outside_ball == found.clean
    # Brightening by eps (the projected point) leaves a 1-bit front-end's answer mostly unchanged.
    assert found.autoattack_robust > 0
    assert found.unconfirmed_claims == found.autoattack_robust


def test_a_number_autoattack_beats_fails(tmp_path: Path, data_dir: Path) -> None:
    """FGSM without BPDA meets the front-end's zero gradient and breaks nothing: the cell's number lies far
    above what AutoAttack (through BPDA) leaves, and the script says so in its exit status."""
    naive = {**matrix(), "attacks": {"fgsm": {"kind": "fgsm", "bpda": False}}}
    naive["evaluation"] = {"n_eval": N_EVAL, "batch_size": N_EVAL, "checks": False}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(naive))
    result = bench_run(path, tmp_path / "r.db", tmp_path / "artifacts", data_dir, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert script(tmp_path, data_dir, "--json", str(tmp_path / "out.json")) == 1
    (cell,) = json.loads((tmp_path / "out.json").read_text())["cells"]
    assert not cell["within"] and cell["autoattack_only"] > 0


def test_cell_filter(store: Path, data_dir: Path) -> None:
    assert script(store, data_dir, "--cell", "no such cell") == 2


def test_stored_matrix_of_a_zoo_classifier_validates_again() -> None:
    """A run stores its matrix with every field; a zoo classifier refuses fields it brings itself when they
    are given, so the stored dump must be read back with its defaults left unset."""
    raw = matrix()
    raw["classifiers"]["Z"] = {"source": "robustbench:Standard", "dataset": "cifar10"}
    parsed = parse_matrix(raw, "test")
    run = Run(matrix=parsed.model_dump(mode="json"))
    assert agreement.stored_matrix(run) == parsed
