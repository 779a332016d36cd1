"""A job's output depends on its config and seed only, not on what ran before it in the process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.e2e

MATRIX = {
    "name": "det",
    "classifiers": {"C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 1, "n_train": 500}}},
    "defenses": {
        "aaa": {"kind": "aaa", "n_train": 128, "params": {"epochs": 1, "width": 4, "attack_steps": 1}}
    },
    "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
    "attacks": {"fgsm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 32, "checks": False},
    "experiments": [{"kind": "native", "defenses": ["aaa"], "guides": ["C"]}],
}


def test_same_config_same_bytes_whatever_the_global_rng(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    hashes, outcomes = [], []
    for i, noise in enumerate((3, 11)):
        torch.rand(noise)  # another job (or a test) consumed random numbers before this run
        db = tmp_path / f"r{i}.db"
        result = bench_run(path, db, tmp_path / f"a{i}", data_dir)
        assert result.exit_code == 0, result.output
        with sqlite3.connect(db) as conn:
            hashes.append(
                sorted(conn.execute("select name, sha256 from artifacts where name in ('model', 'frontend')"))
            )
            outcomes.append(
                [
                    load_file(str(tmp_path / f"a{i}" / p))
                    for (p,) in conn.execute("select path from artifacts where name = 'outcomes'")
                ]
            )
    assert len(hashes[0]) == 2 and hashes[0] == hashes[1], "weights are byte-identical"
    for a, b in zip(outcomes[0], outcomes[1], strict=True):
        for name in ("clean", "robust", "x_adv"):  # "cost" holds wall times
            assert torch.equal(a[name], b[name])
