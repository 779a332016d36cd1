"""The smallest real matrix that exercises every job kind, shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from bench.cli import main

MATRIX: dict[str, Any] = {
    "name": "tiny-mnist",
    "description": "smallest matrix that exercises every job kind",
    "scale": "reduced for tests: 2,000 training images, 1 epoch, 64 evaluation images",
    "classifiers": {
        "B": {"arch": "mnist-b", "dataset": "mnist", "train": {"epochs": 1, "n_train": 2000}},
        "C": {"arch": "mnist-c", "dataset": "mnist", "seed": 1, "train": {"epochs": 1, "n_train": 2000}},
    },
    "defenses": {
        "aaa": {"kind": "aaa", "n_train": 512, "params": {"epochs": 1, "width": 8, "attack_steps": 2}},
        "none": {"kind": "none"},
    },
    "threats": {"linf": {"norm": "linf", "epsilons": [0.3]}},
    "attacks": {"pgd": {"kind": "pgd", "params": {"steps": 5}}, "fgsm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 64, "batch_size": 64, "checks": False},
    "experiments": [
        {"kind": "native", "defenses": ["aaa", "none"], "guides": ["B"]},
        {"kind": "cross-model", "defenses": ["aaa", "none"], "guides": ["B"], "targets": ["C"]},
    ],
}


def bench_run(
    matrix: Path, db: Path, artifacts: Path, data_dir: Path, *extra: str | Path, catch_exceptions: bool = True
) -> Result:
    """``bench run --quiet`` of one matrix into the given store and artifacts, as a user types it."""
    args: list[str | Path] = ["run", "--matrix", matrix, "--db", db, "--artifacts", artifacts]
    args += ["--data-dir", data_dir, "--quiet"]
    return CliRunner().invoke(main, [str(a) for a in (*args, *extra)], catch_exceptions=catch_exceptions)
