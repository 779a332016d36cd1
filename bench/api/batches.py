"""The mini-batches of a training loop: one module owns the epoch's shuffle, its slicing and its progress
steps, so every recipe and defense draws its batches the same way and a resumed run draws the same ones.

A loop reads ::

    batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
    state = TrainingState(ctx, parts, {"shuffle": gen})
    for epoch in batches.epochs(state, params.epochs, "train my-defense"):
        for x, y in batches:
            ...

The permutation comes from the loop's own generator, the one :class:`TrainingState` checkpoints, drawn at
the start of each epoch; nothing else may draw from it in between if a resumed run is to repeat the killed
one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from bench.api.context import JobContext, Progress
from bench.api.resume import TrainingState


class ShuffledBatches:
    """Aligned tensors (images, labels, precomputed examples) cut into shuffled mini-batches, reshuffled
    every epoch. uint8 NCHW tensors are images (:class:`ImageData`'s layout): a batch of them comes out as
    floats in [0, 1], so the split stays uint8 (a quarter of the memory) on the device. The last batch of an
    epoch is the short remainder."""

    def __init__(
        self, ctx: JobContext, generator: torch.Generator, batch_size: int, *tensors: torch.Tensor
    ) -> None:
        sizes = {t.shape[0] for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"tensors to batch together must have one length, got {sorted(sizes)}")
        self._ctx = ctx
        self._generator = generator
        self._tensors = [t.to(ctx.device) for t in tensors]
        self.batch_size = batch_size
        self.n = sizes.pop()
        #: Batches in an epoch, what per-epoch running totals are divided by.
        self.steps = math.ceil(self.n / batch_size)
        self._bar: Progress | None = None

    def epochs(self, state: TrainingState, total: int, desc: str) -> Iterator[int]:
        """``state``'s epochs still to run, with a progress bar of steps that starts past the epochs a killed
        run finished and closes when the loop ends (or breaks)."""
        self._bar = self._ctx.progress(total * self.steps, desc, unit="step")
        self._bar.update(state.start * self.steps)
        try:
            yield from state.epochs(total)
        finally:
            self._bar.close()
            self._bar = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """One epoch: a fresh permutation, then its batches; each counts on the bar once the loop body that
        used it is done."""
        order = torch.randperm(self.n, generator=self._generator, device=self._ctx.device)
        for s in range(self.steps):
            idx = order[s * self.batch_size : (s + 1) * self.batch_size]
            yield tuple(t[idx].float().div_(255.0) if _is_images(t) else t[idx] for t in self._tensors)
            if self._bar is not None:
                self._bar.update(1)


def _is_images(t: torch.Tensor) -> bool:
    return t.dtype == torch.uint8 and t.dim() == 4
