"""Front-end training: a fit killed part-way resumes from its last epoch to the weights of an uninterrupted
one, and AAA reports held-out numbers when the job gives it validation images."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench.api import DEFENSES, Checkpoints, DatasetInfo, ImageData, JobContext
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
#: 96 images in batches of 32: three steps per epoch.
PARAMS: dict[str, dict[str, Any]] = {
    "aaa": {"epochs": 2, "warmup_epochs": 1, "width": 4, "attack_steps": 2, "batch_size": 32},
    "static-denoiser": {"epochs": 3, "width": 4, "attack_steps": 2, "batch_size": 32},
}


def guide() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval().requires_grad_(False)


def images(n: int, seed: int) -> ImageData:
    x = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    info = DatasetInfo("tiny", 3, SHAPE, (0.5,), (0.5,), n, 0)
    return ImageData((x * 255).round().to(torch.uint8), guide()(x).argmax(1), f"tiny{seed}", info)


def fit(
    kind: str, ctx: JobContext, val: ImageData | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    defense = DEFENSES.get(kind)()
    params = defense.Params.model_validate(PARAMS[kind])
    torch.manual_seed(1)
    frontend = defense.build(params, SHAPE)
    metrics = defense.fit(frontend, [guide(), guide()], images(96, 1), val, params, ctx)
    return copy.deepcopy(frontend.state_dict()), metrics


@pytest.mark.parametrize(
    "kind, killed_after_steps", [("aaa", 1), ("aaa", 7), ("static-denoiser", 4)], ids=str
)
def test_a_fit_killed_part_way_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, kind: str, killed_after_steps: int
) -> None:
    expected, expected_metrics = fit(kind, JobContext(seed=2))
    with pytest.raises(Killed):
        fit(kind, CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(killed_after_steps)))
    torch.manual_seed(999)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    weights, metrics = fit(kind, resumed)
    done = killed_after_steps // 3 * 3
    assert resumed.bar.skipped == done and resumed.bar.run == 9 - done, "resumed after the last whole epoch"
    assert all(torch.equal(weights[k], expected[k]) for k in expected), "resumed weights differ"
    assert {k: v for k, v in metrics.items() if "wall" not in k} == {
        k: v for k, v in expected_metrics.items() if "wall" not in k
    }


def test_aaa_reports_validation_numbers_only_when_given_validation_images() -> None:
    weights, metrics = fit("aaa", JobContext(seed=2), val=images(40, 7))
    without, metrics_without = fit("aaa", JobContext(seed=2))
    assert all(torch.equal(weights[k], without[k]) for k in without), "validating must not change training"
    assert not any(k.startswith("val_") for k in metrics_without)
    validation = {"val_clean_accuracy", "val_adv_accuracy", "val_mse", "val_loss", "lr_reductions"}
    assert set(metrics) - set(metrics_without) == validation
    assert 0 <= metrics["val_adv_accuracy"] <= 1 and 0 <= metrics["val_clean_accuracy"] <= 1
    assert 0 < metrics["val_mse"] < 1
