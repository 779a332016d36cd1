"""A front-end that changes the image shape, yields NaN or fails to train fails its own jobs, with a message.

The jobs that do not depend on it still finish, the CLI lists the failed and blocked jobs and exits 1, and a
rerun once the defense is fixed does only what was left undone.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import bench.cli
from bench.api import DEFENSES, Defense, FrontEnd
from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.e2e


class Crop(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:-2, 2:-2]


class Poison(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


class Identity(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


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


#: Whether :class:`FlakyDefense`'s training fails; a test "fixes" it between two runs.
FLAKY = {"broken": True}


class FlakyDefense(Defense):
    """Test-only: a trainable identity whose training raises while ``FLAKY["broken"]`` holds."""

    trainable = True
    needs_data = True

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Identity()

    def fit(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        if FLAKY["broken"]:
            raise RuntimeError("training diverged")
        return {}


for name, cls in (
    ("test-crop", CropDefense),
    ("test-poison", PoisonDefense),
    ("test-crop-trainable", TrainableCropDefense),
    ("test-flaky", FlakyDefense),
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
        ("test-poison", "outside its declared output range [0, 1] or non-finite values"),
        ("test-crop-trainable", "must return images of the shape it is given"),
    ],
)
def test_misbehaving_front_end_fails_only_its_own_jobs(
    tmp_path: Path, data_dir: Path, defense: str, message: str
) -> None:
    result = run(tmp_path, data_dir, defense)
    assert result.exit_code == 1, result.output
    label = f"front-end bad ({defense})" + (" guides C" if "trainable" in defense else "")
    assert message in failure_line(result.output, label)
    assert re.search(rf"blocked  .*: waits on {re.escape(label)}$", result.output, re.MULTILINE)
    with sqlite3.connect(tmp_path / "r.db") as conn:
        failed = conn.execute("select label from jobs where status='failed'").fetchall()
        bad = conn.execute("select count(*) from results where defense='bad'").fetchone()[0]
        undefended = conn.execute("select count(*) from results where defense='none'").fetchone()[0]
        status = conn.execute("select status from runs").fetchall()
    assert [failed_label for (failed_label,) in failed] == [label]
    assert bad == 0
    assert undefended > 0, "the undefended cell does not depend on the bad front-end and must finish"
    assert status == [("failed",)]


def failure_line(output: str, label: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith(f"failed   {label} (")]
    assert len(lines) == 1, output
    return lines[0]


def counts(output: str) -> tuple[int, int, int, int]:
    """(ran, already complete, failed, blocked) from the line ``bench run`` ends its work with."""
    found = re.search(r"^ran (\d+) jobs, (\d+) already complete(?:, (\d+) failed, (\d+) blocked by them)?$",
                      output, re.MULTILINE)
    assert found, output
    ran, complete, failed, blocked = (int(g or 0) for g in found.groups())
    return ran, complete, failed, blocked


def test_a_rerun_after_the_fix_does_only_the_failed_and_blocked_jobs(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.cli, "git_describe", lambda: "abc1234-dirty")
    monkeypatch.setitem(FLAKY, "broken", True)
    first = run(tmp_path, data_dir, "test-flaky")
    assert first.exit_code == 1, first.output
    assert failure_line(first.output, "front-end bad (test-flaky) guides C").endswith(
        "RuntimeError: training diverged"
    )
    ran, complete, failed, blocked = counts(first.output)
    assert (complete, failed) == (0, 1) and ran >= 3 and blocked >= 2

    monkeypatch.setitem(FLAKY, "broken", False)
    second = run(tmp_path, data_dir, "test-flaky")
    assert second.exit_code == 0, second.output
    assert counts(second.output) == (failed + blocked, ran, 0, 0)
    with sqlite3.connect(tmp_path / "r.db") as conn:
        runs = conn.execute("select status, git_commit from runs order by id").fetchall()
        statuses = conn.execute("select distinct status from jobs").fetchall()
    assert runs == [("failed", "abc1234-dirty"), ("done", "abc1234-dirty")]
    assert statuses == [("done",)]
