"""A front-end that changes the image shape or yields NaN stops the run with a message; nothing is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from bench.api import DEFENSES, Defense, FrontEnd
from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.e2e


class Crop(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:-2, 2:-2]


class Poison(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


class CropDefense(Defense):
    """Test-only: crops its input, which no front-end may do."""

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Crop()


class PoisonDefense(Defense):
    """Test-only: returns NaN images."""

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Poison()


class TrainableCropDefense(CropDefense):
    """Test-only: a trainable front-end that crops; it must be refused before its training starts."""

    trainable = True

    def fit(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        raise AssertionError("a front-end of the wrong shape must be refused before training")


for name, cls in (
    ("test-crop", CropDefense),
    ("test-poison", PoisonDefense),
    ("test-crop-trainable", TrainableCropDefense),
):
    if name not in DEFENSES:
        DEFENSES.add(name, cls)


def run(tmp: Path, data_dir: Path, defense: str) -> Any:
    matrix = {
        "name": f"bad-{defense}",
        "classifiers": {"C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 1, "n_train": 500}}},
        "defenses": {"none": {"kind": "none"}, "bad": {"kind": defense}},
        "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
        "attacks": {"fgsm": {"kind": "fgsm"}},
        "evaluation": {"n_eval": 32, "checks": False},
        "experiments": [{"kind": "native", "defenses": ["none", "bad"], "guides": ["C"]}],
    }
    path = tmp / f"{defense}.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return bench_run(path, tmp / "r.db", tmp / "a", data_dir)


@pytest.mark.parametrize(
    "defense, message",
    [
        ("test-crop", "must return images of the shape it is given"),
        ("test-poison", "outside [0,1] or non-finite values"),
        ("test-crop-trainable", "must return images of the shape it is given"),
    ],
)
def test_misbehaving_front_end_stops_the_run(
    tmp_path: Path, data_dir: Path, defense: str, message: str
) -> None:
    result = run(tmp_path, data_dir, defense)
    assert result.exit_code == 2
    assert message in result.output and "front-end bad" in result.output
    with sqlite3.connect(tmp_path / "r.db") as conn:
        done = conn.execute("select count(*) from jobs where status='done'").fetchone()[0]
        failed = conn.execute("select label from jobs where status='failed'").fetchall()
        rows = conn.execute("select count(*) from results where defense='bad'").fetchone()[0]
        status = conn.execute("select status from runs").fetchall()
    assert done >= 1, "jobs that finished before the failure are kept"
    label = f"front-end bad ({defense})" + (" guides C" if "trainable" in defense else "")
    assert [failed_label for (failed_label,) in failed] == [label]
    assert rows == 0
    assert status == [("failed",)]
