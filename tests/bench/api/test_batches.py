"""Every recipe and defense draws its training batches through ShuffledBatches: each epoch covers the split
once in a permutation drawn from the loop's generator, images come out in [0, 1], and the progress bar of a
resumed run starts past the epochs already done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.api import Checkpoints, JobContext, ShuffledBatches, TrainingState


class Counted:
    """A progress bar that remembers what it was told."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.done += n

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        self.closed = True


class BarContext(JobContext):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bars: list[Counted] = []

    def progress(self, total: int, desc: str, unit: str = "it") -> Counted:
        self.bars.append(Counted(total))
        return self.bars[-1]


def split(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return images, torch.arange(n)


def test_an_epoch_covers_the_split_once_in_the_generators_permutation() -> None:
    ctx = JobContext()
    images, labels = split(10)
    gen = ctx.generator(salt=1)
    batches = ShuffledBatches(ctx, gen, 4, images, labels)
    assert batches.steps == 3
    expected = torch.randperm(10, generator=ctx.generator(salt=1))
    drawn = list(batches)
    assert [len(y) for _, y in drawn] == [4, 4, 2]
    order = torch.cat([y for _, y in drawn])
    assert torch.equal(order, expected)
    for x, y in drawn:
        assert x.dtype == torch.float32
        assert torch.equal(x[:, 0, 0, 0], y.float() / 255.0)  # the image of example i is i / 255
    assert not torch.equal(torch.cat([y for _, y in batches]), order)  # the next epoch reshuffles


def test_float_tensors_pass_through_and_lengths_must_agree() -> None:
    ctx = JobContext()
    adv, clean = torch.rand(5, 1, 2, 2), torch.rand(5, 1, 2, 2)
    (a, c), *_ = ShuffledBatches(ctx, ctx.generator(), 5, adv, clean)
    idx = torch.randperm(5, generator=ctx.generator())
    assert torch.equal(a, adv[idx]) and torch.equal(c, clean[idx])
    with pytest.raises(ValueError, match="one length"):
        ShuffledBatches(ctx, ctx.generator(), 2, adv, clean[:4])


def test_the_bar_counts_steps_and_a_resumed_loop_starts_past_the_done_epochs(tmp_path: Path) -> None:
    images, labels = split(10)
    ctx = BarContext(checkpoints=Checkpoints(tmp_path))
    batches = ShuffledBatches(ctx, ctx.generator(), 4, images, labels)
    for epoch in batches.epochs(TrainingState(ctx, {}), 3, "train"):
        for _ in batches:
            pass
        if epoch == 1:
            break  # as if killed at the end of the second epoch, before its checkpoint: one epoch is saved
    first = ctx.bars[0]
    assert (first.total, first.done, first.closed) == (9, 6, True)

    again = BarContext(checkpoints=Checkpoints(tmp_path))
    batches = ShuffledBatches(again, again.generator(), 4, images, labels)
    state = TrainingState(again, {})
    assert state.start == 1
    ran = []
    for epoch in batches.epochs(state, 3, "train"):
        ran.append(epoch)
        for _ in batches:
            assert again.bars[0].done >= 3  # the first epoch's steps counted before any is drawn
    assert ran == [1, 2]
    bar = again.bars[0]
    assert (bar.total, bar.done, bar.closed) == (9, 9, True)
