"""A run killed in the middle of a training job resumes that job from its last epoch's checkpoint, and ends
with weights bit-identical to those of a run never interrupted (on CPU, one thread)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.e2e.tiny import bench_run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_thread")]

#: Two training jobs of three epochs each: the classifier, then the front-end trained through it.
MATRIX = {
    "name": "resume-training",
    "classifiers": {
        "C": {
            "arch": "mnist-c",
            "dataset": "mnist",
            "train": {"epochs": 3, "n_train": 1500, "batch_size": 50},
        },
    },
    "defenses": {
        "aaa": {
            "kind": "aaa",
            "n_train": 384,
            "n_val": 64,
            "params": {"epochs": 3, "warmup_epochs": 0, "width": 4, "attack_steps": 2, "batch_size": 64},
        }
    },
    "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
    "attacks": {"fgsm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 32, "batch_size": 32, "checks": False},
    "experiments": [{"kind": "native", "defenses": ["aaa"], "guides": ["C"]}],
}


def run_in_process(tmp: Path, data_dir: Path, store: str) -> None:
    """The runs that are not killed run here, which saves starting Python and PyTorch again."""
    result = bench_run(tmp / "m.yaml", tmp / f"{store}.db", tmp / store, data_dir, "--threads", "1")
    assert result.exit_code == 0, result.output


def start(tmp: Path, data_dir: Path, store: str) -> subprocess.Popen[bytes]:
    args = ["run", "--matrix", tmp / "m.yaml", "--db", tmp / f"{store}.db", "--artifacts", tmp / store]
    args += ["--data-dir", data_dir, "--threads", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "bench", *(str(a) for a in args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def checkpoints(artifacts: Path) -> dict[str, int]:
    """Job key -> epochs done, for every training checkpoint on disk."""
    found = {}
    for path in (artifacts / "checkpoints").glob("*/last.pt"):
        try:
            found[path.parent.name] = int(torch.load(path, weights_only=True)["epoch"])
        except (OSError, EOFError, RuntimeError):  # replaced while being read
            continue
    return found


def kill_once_checkpointed(proc: subprocess.Popen[bytes], artifacts: Path, seen: set[str]) -> tuple[str, int]:
    """SIGKILL a run as soon as a training job not in ``seen`` has saved an epoch; return that job's key and
    the epochs its checkpoint holds."""
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not set(checkpoints(artifacts)) - seen:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before a new checkpoint appeared; make its training longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    new = {k: e for k, e in checkpoints(artifacts).items() if k not in seen}
    assert len(new) == 1, f"the run was killed after its job had finished ({new}); make its training longer"
    ((key, epoch),) = new.items()
    assert 1 <= epoch < 3, "killed between two epochs of a three-epoch job"
    return key, epoch


def training_jobs(db: Path) -> dict[str, tuple[str, dict[str, object]]]:
    """Training job key -> (sha256 of its weights, its metrics)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select j.key, a.sha256, j.metrics from jobs j join artifacts a on a.job_key = j.key "
            "where j.status = 'done' and a.name in ('model', 'frontend')"
        ).fetchall()
    return {key: (sha, json.loads(metrics)) for key, sha, metrics in rows}


def test_a_run_killed_mid_training_resumes_each_job_to_the_uninterrupted_weights(
    tmp_path: Path, data_dir: Path
) -> None:
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(MATRIX))
    run_in_process(tmp_path, data_dir, "reference")

    store = tmp_path / "killed"
    classifier, classifier_epochs = kill_once_checkpointed(start(tmp_path, data_dir, "killed"), store, set())
    # The rerun resumes the classifier, then is killed in the middle of the front-end's training.
    rerun = start(tmp_path, data_dir, "killed")
    frontend, frontend_epochs = kill_once_checkpointed(rerun, store, {classifier})
    run_in_process(tmp_path, data_dir, "killed")

    expected, resumed = training_jobs(tmp_path / "reference.db"), training_jobs(tmp_path / "killed.db")
    assert set(resumed) == set(expected) == {classifier, frontend}
    for key in expected:
        assert resumed[key][0] == expected[key][0], "resumed weights differ from the uninterrupted run's"
        assert "resumed_from_epoch" not in expected[key][1]
    assert resumed[classifier][1]["resumed_from_epoch"] == classifier_epochs
    assert resumed[frontend][1]["resumed_from_epoch"] == frontend_epochs
    assert checkpoints(store) == {}, "a recorded job's checkpoints are deleted"
