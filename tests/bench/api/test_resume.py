"""A training loop killed mid-epoch and run again resumes from its last checkpoint and ends with exactly the
weights, random streams and running values of a run never interrupted (CPU is deterministic)."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import nn

from bench.api import (
    Checkpoints,
    DatasetInfo,
    Identity,
    ImageData,
    JobContext,
    Recipe,
    RecipeParams,
    TrainingState,
)
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyParams(RecipeParams):
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-2, gt=0)


class ToyRecipe(Recipe):
    """Adam under a cosine schedule, with augmentation drawn from the loop's private generator."""

    Params = ToyParams
    full_scale_epochs: ClassVar[int] = 3

    def make_optimizer(
        self, model: nn.Module, params: Any, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        opt = torch.optim.Adam(model.parameters(), lr=params.lr)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs * steps_per_epoch)

    def augment(self, x: torch.Tensor, params: Any, gen: torch.Generator) -> torch.Tensor:
        return x + 0.1 * torch.rand(x.shape, generator=gen)


def toy_model() -> nn.Module:
    """BatchNorm statistics and dropout's draws from the global stream: state beyond the weights."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(144, 3)
    )


def toy_data() -> ImageData:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 1, 8, 8), generator=g, dtype=torch.uint8)
    info = DatasetInfo("toy", 3, (1, 8, 8), (0.5,), (0.5,), 48, 0)
    return ImageData(images, torch.randint(0, 3, (48,), generator=g), "toy", info)


def fit(ctx: JobContext) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    model = toy_model()
    recipe = ToyRecipe()
    metrics = recipe.fit(model, toy_data(), ToyParams(batch_size=16), ctx)  # 3 steps per epoch
    return copy.deepcopy(model.state_dict()), metrics


@pytest.mark.parametrize("done_epochs, steps_into_next", [(0, 2), (1, 1), (2, 2)])
def test_a_fit_killed_mid_epoch_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, done_epochs: int, steps_into_next: int
) -> None:
    expected, expected_metrics = fit(JobContext(seed=3))

    folder = tmp_path / "checkpoints"
    killed = Steps(kill_after=3 * done_epochs + steps_into_next)
    with pytest.raises(Killed):
        fit(CountingContext(seed=3, checkpoints=Checkpoints(folder), bar=killed))
    saved = Checkpoints(folder).load()
    assert (saved.epoch if saved else 0) == done_epochs, "a checkpoint after every epoch, none mid-epoch"

    # Anything run in between (another job, a fresh process) leaves the global streams elsewhere.
    torch.manual_seed(12345)
    resumed = Checkpoints(folder)
    ctx = CountingContext(seed=3, checkpoints=resumed)
    weights, metrics = fit(ctx)
    assert resumed.resumed_from == (done_epochs if done_epochs else None)
    assert (ctx.bar.skipped, ctx.bar.run) == (3 * done_epochs, 3 * (3 - done_epochs))
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected), "resumed weights differ"
    assert metrics["final_epoch_loss"] == expected_metrics["final_epoch_loss"]


def test_a_fit_killed_after_its_last_epoch_returns_the_same_result_without_training(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    first, first_metrics = fit(JobContext(seed=3, checkpoints=Checkpoints(folder)))
    # The job was killed before its artifacts were recorded: the checkpoint of the last epoch is still there.
    again = Checkpoints(folder)
    ctx = CountingContext(seed=3, checkpoints=again, bar=Steps(kill_after=0))
    weights, metrics = fit(ctx)
    assert again.resumed_from == 3 and ctx.bar.skipped == 9
    assert all(torch.equal(weights[k], first[k]) for k in first)
    assert metrics["final_epoch_loss"] == first_metrics["final_epoch_loss"]


def draws_per_epoch(
    ctx: JobContext, epochs: int, kill_at: int | None = None
) -> tuple[list[list[float]], tuple[float, int]]:
    """Draws from every random stream a loop may use, epoch by epoch, with a running total and count."""
    fe = Identity()
    fe.reseed(7)
    gen = ctx.generator(salt=1)
    total = torch.zeros(())
    state = TrainingState(ctx, {"frontend": fe}, {"private": gen}, {"total": total, "count": 0})
    out = []
    for epoch in state.epochs(epochs):
        if epoch == kill_at:
            raise Killed
        row = [
            random.random(),
            float(np.random.rand()),
            float(np.random.randn()),  # NumPy's Gaussian keeps a cached second value in its state
            float(torch.rand(())),
            float(torch.rand((), generator=gen)),
            float(torch.rand((), generator=fe.rng(torch.device("cpu")))),
        ]
        total += sum(row)
        state.values["count"] += 1
        out.append(row)
    return out, (float(total), state.values["count"])


def test_every_random_stream_and_running_value_continues_where_it_stopped(tmp_path: Path) -> None:
    ctx = JobContext(seed=5)
    ctx.seed_everything()
    expected, expected_values = draws_per_epoch(ctx, 4)

    killed = JobContext(seed=5, checkpoints=Checkpoints(tmp_path))
    killed.seed_everything()
    with pytest.raises(Killed):
        draws_per_epoch(killed, 4, kill_at=2)
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    resumed = JobContext(seed=5, checkpoints=Checkpoints(tmp_path))
    rest, values = draws_per_epoch(resumed, 4)
    assert rest == expected[2:]
    assert values == expected_values
