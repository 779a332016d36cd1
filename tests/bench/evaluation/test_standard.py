"""The standard protocol's attacks for a pipeline whose front-end declares smoothing, as the planner plans
them; every other pipeline's attacks and keys stay as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.artifacts import ArtifactStore
from bench.config import parse_matrix
from bench.errors import ConfigError
from bench.evaluation.standard import PGD_RESTARTS, PGD_STEPS, SMOOTHED_PGD_DRAWS, standard_attacks
from bench.jobs.env import Env
from bench.jobs.spec import JobSpec
from bench.plan import Planned, plan_matrix

MATRIX: dict[str, Any] = {
    "name": "smoothed",
    "classifiers": {"A": {"arch": "mnist-a", "dataset": "mnist", "train": {"epochs": 1, "n_train": 1000}}},
    "defenses": {"smooth": {"kind": "smoothing", "params": {"sigma": 0.25}}, "none": {"kind": "none"}},
    "threats": {"l2": {"norm": "l2", "epsilons": [0.5]}},
    "evaluation": {"n_eval": 50},
    "experiments": [{"kind": "native", "defenses": ["smooth", "none"], "guides": ["A"]}],
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Env:
    return Env(data_dir, False, ArtifactStore(tmp_path_factory.mktemp("art")))


def jobs(planned: Planned, kind: str, defense: str) -> list[JobSpec]:
    return [
        s for s in planned.graph
        if s.kind == kind and planned.graph.evaluation_use(s.key).defense == defense
    ]


def test_a_smoothed_pipeline_is_attacked_by_the_smoothed_pgd_alone() -> None:
    for randomized in (False, True):
        (attack,) = standard_attacks(randomized, smoothed=True)
        assert (attack.label, attack.kind) == ("std:smoothed-pgd", "smoothed-pgd")
        assert attack.params == {"steps": PGD_STEPS, "restarts": PGD_RESTARTS, "m": SMOOTHED_PGD_DRAWS}
    assert "std:smoothed-pgd" not in [a.label for r in (False, True) for a in standard_attacks(r)]


def test_the_planner_gives_a_smoothed_pipeline_its_attack_and_predict_and_no_other(env: Env) -> None:
    planned = plan_matrix(parse_matrix(MATRIX, "m.yaml"), Path("."), env)
    (attack,) = jobs(planned, "attack", "smooth")
    assert attack.config["attack"] == "smoothed-pgd"
    assert attack.config["params"]["m"] == SMOOTHED_PGD_DRAWS and attack.config["params"]["restarts"] == 2
    (cell,) = jobs(planned, "cell", "smooth")
    for spec in (attack, cell):
        assert spec.config["predict"] == {"n": 1000, "alpha": 0.001, "noise_batch": 1000}
    deterministic = [a.config["attack"] for a in jobs(planned, "attack", "none")]
    assert deterministic == [a.kind for a in standard_attacks(False)]
    plain = jobs(planned, "attack", "none") + jobs(planned, "cell", "none")
    assert all("predict" not in s.config for s in plain)


def test_a_smoothed_pipeline_has_no_standard_attack_in_l1(env: Env) -> None:
    l1 = {"l1": {"norm": "l1", "epsilons": [10.0]}}
    with pytest.raises(ConfigError, match="only in linf, l2, not l1"):
        plan_matrix(parse_matrix({**MATRIX, "threats": l1}, "m.yaml"), Path("."), env)


def test_an_attack_on_a_smoothed_classifier_is_refused_against_a_pipeline_without_smoothing(env: Env) -> None:
    raw = {**MATRIX, "attacks": {"spgd": {"kind": "smoothed-pgd"}}}
    with pytest.raises(ConfigError, match="declares no smoothing"):
        plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    fine = {**raw, "experiments": [{"kind": "native", "defenses": ["smooth"], "guides": ["A"]}]}
    planned = plan_matrix(parse_matrix(fine, "m.yaml"), Path("."), env)
    assert [s.config["attack"] for s in jobs(planned, "attack", "smooth")] == ["smoothed-pgd"]


def test_the_weak_preset_is_planned_under_its_name_and_every_row_says_it_is_weak(env: Env) -> None:
    raw = {
        **MATRIX,
        "attacks": {"irs": {"kind": "pgd-irs-weak"}},
        "experiments": [{"kind": "native", "defenses": ["smooth"], "guides": ["A"]}],
    }
    planned = plan_matrix(parse_matrix(raw, "m.yaml"), Path("."), env)
    for spec in jobs(planned, "attack", "smooth") + jobs(planned, "cell", "smooth"):
        said = "attack pgd-irs-weak: weak: steps reach 0.2 of eps 0.5"
        weak = [n for n in spec.scale_notes if n.startswith(said)]
        assert len(weak) == 1 and ";" not in weak[0]  # the report splits notes at semicolons
