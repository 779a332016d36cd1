"""Semantic checks of a matrix that its schema cannot express."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.test_config import edit, problems


@pytest.mark.parametrize("kind", ["pgd-norouzzadeh", "pgd"])
def test_pgd_that_cannot_reach_the_edge_of_the_ball_is_refused(tmp_path: Path, kind: str) -> None:
    params = {} if kind == "pgd-norouzzadeh" else {"steps": 10, "step_sizes": [0.01]}
    msg = problems(edit(attacks={"short": {"kind": kind, "params": params}}), tmp_path)
    assert "attacks.short" in msg and "cannot reach the edge of the ball" in msg


def test_the_same_problem_is_reported_once(tmp_path: Path) -> None:
    msg = problems(edit(threats__linf__epsilons=[1.5]), tmp_path)
    assert msg.count("exceeds 1") == 1


def test_a_misspelt_parameter_gets_the_closest_valid_key(tmp_path: Path) -> None:
    msg = problems(edit(defenses__aaa__params={"widht": 8}), tmp_path)
    assert "defenses.aaa.params.widht: unknown key" in msg and "did you mean 'width'?" in msg


def test_a_bad_choice_is_not_described_twice(tmp_path: Path) -> None:
    msg = problems(edit(threats__linf__norm="l3"), tmp_path)
    assert msg.count("'linf', 'l2' or 'l1'") == 1


def test_a_zoo_model_with_another_class_count_is_refused_before_any_work(tmp_path: Path) -> None:
    raw = edit(classifiers__C={"source": "torchvision:resnet18", "dataset": "mnist"})
    msg = problems(raw, tmp_path)
    assert "classifiers.C.source" in msg and "has 1000 classes but the dataset has 10" in msg


@pytest.mark.parametrize(
    "classifier, expected",
    [
        ({"source": "torchvision:resnet18", "dataset": "mnist", "arch": "mnist-c"}, "remove arch"),
        ({"source": "torchvision:resnet18", "dataset": "mnist", "train": {"epochs": 1}}, "remove train"),
        ({"arch": "mnist-c", "dataset": "mnist", "weights": "w.safetensors", "train": {"epochs": 1}},
         "is not trained: remove 'train'"),
    ],
)
def test_settings_a_classifier_would_ignore_are_refused(
    tmp_path: Path, classifier: dict[str, object], expected: str
) -> None:
    assert expected in problems(edit(classifiers__C=classifier), tmp_path)


def test_a_classifier_listed_twice_in_a_pool_is_refused(tmp_path: Path) -> None:
    raw = edit(experiments=[{"kind": "ensemble-size", "defenses": ["aaa"], "pool": ["A", "C", "A"],
                             "sizes": [2], "draws": 3, "targets": ["C"]}])
    assert "experiments[0].pool: A listed more than once" in problems(raw, tmp_path)


def test_a_timm_tag_that_does_not_exist_is_a_validation_error(tmp_path: Path) -> None:
    raw = edit(classifiers__C={"source": "timm:resnet18.no_such_tag", "dataset": "mnist"})
    assert "classifiers.C.source" in problems(raw, tmp_path)
