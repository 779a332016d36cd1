"""A model-zoo classifier (``source:``) runs through the whole graph with its published weights.

The zoo here is a test-only loader that, like RobustBench, has no weights-free skeleton and refuses
``pretrained=False``; the real loaders need network access this suite does not have.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from classifiers.adapters import SOURCES, LoadOptions
from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.e2e


def published_linear() -> nn.Module:
    torch.manual_seed(123)  # "published" weights: the same every time the zoo hands the model out
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()


def weights_only_zoo(
    fields: tuple[str, ...], num_classes: int, options: LoadOptions
) -> tuple[nn.Module, Any]:
    if not options.pretrained:
        raise AssertionError("this zoo, like RobustBench, only hands out models with their weights")
    return published_linear(), {"model": fields[0], "num_classes": num_classes}


if "test-zoo" not in SOURCES:
    SOURCES.add("test-zoo", weights_only_zoo)


def test_source_classifier_is_attacked_with_its_published_weights(tmp_path: Path, data_dir: Path) -> None:
    matrix = {
        "name": "zoo",
        "classifiers": {"Z": {"source": "test-zoo:linear", "dataset": "mnist"}},
        "defenses": {"none": {"kind": "none"}},
        "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
        "attacks": {"fgsm": {"kind": "fgsm"}},
        "evaluation": {"n_eval": 32, "checks": False},
        "experiments": [{"kind": "native", "defenses": ["none"], "guides": ["Z"]}],
    }
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(matrix))
    first = bench_run(path, tmp_path / "r.db", tmp_path / "a", data_dir)
    assert first.exit_code == 0, first.output
    with sqlite3.connect(tmp_path / "r.db") as conn:
        card = conn.execute("select metrics from jobs where kind='train-classifier'").fetchone()[0]
        clean = conn.execute(
            "select value from results where metric='clean_accuracy' and attack='worst-case'"
        ).fetchone()[0]
    assert '"test_accuracy"' in card
    # an untrained linear layer on MNIST is near chance; the rows must be that model's, not a retrained one
    assert 0.0 <= clean <= 0.5
    again = bench_run(path, tmp_path / "r.db", tmp_path / "a", data_dir)
    assert again.exit_code == 0 and "ran 0 jobs" in again.output, again.output
