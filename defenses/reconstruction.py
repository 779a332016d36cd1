"""Training a front-end to reconstruct: epochs on a mean squared error to a target image (a static denoiser's
clean image for its adversarial one), and plain reconstruction of clean images before adversarial training,
our addition for front-ends trained from scratch (the warm-up).

An untrained image-to-image network does not pass its input on: through a sigmoid it outputs near-uniform
grey, without one it outputs noise of about unit scale (a mean squared error near 1 on [0, 1] images). The
guides behind it then see no image, so the first adversarial steps optimize against a classifier answering
at random. At a paper's scale (tens of thousands of steps) training recovers; at a CPU reproduction's few
hundred steps it may not, and we saw the unbounded U-Net's last level die instead (every ReLU there at zero,
so the front-end outputs one constant image whatever it is given). A few epochs of reconstruction on the
clean images first start adversarial training from near the identity.

None of the seed papers has this step except as a reading of AAA; every defense that offers it says whether
it is on by default, and a matrix that turns it on states so in its header.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from pydantic import Field

from bench.api import DefenseParams, FrontEnd, JobContext, ShuffledBatches


class WarmUpParams(DefenseParams):
    """The warm-up of a front-end trained with SGD from its paper's schedule: off unless asked for, and run
    with an Adam optimizer of its own, so the paper's optimizer and schedule start untouched after it."""

    #: Epochs of plain reconstruction before adversarial training (ours, not the paper's).
    warmup_epochs: int = Field(0, ge=0)
    #: Adam's learning rate during those epochs.
    warmup_lr: float = Field(1e-3, gt=0)


def mse_epoch(
    frontend: FrontEnd, opt: torch.optim.Optimizer, pairs: Iterable[tuple[torch.Tensor, ...]], ctx: JobContext
) -> float:
    """One epoch of ``opt`` on the mean squared error between the front-end's output for each pair's input
    and the pair's target; returns the epoch's mean loss."""
    total, steps = torch.zeros((), device=ctx.device), 0
    for inputs, targets, *_ in pairs:
        with ctx.autocast():
            loss = F.mse_loss(frontend(inputs).float(), targets)
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()
        total += loss.detach()
        steps += 1
    return float(total) / max(steps, 1)


def reconstruction_epoch(
    frontend: FrontEnd, opt: torch.optim.Optimizer, batches: ShuffledBatches, ctx: JobContext
) -> float:
    """One epoch of reconstructing the clean images of ``batches``; returns the epoch's mean loss."""
    return mse_epoch(frontend, opt, ((x, x) for x, *_ in batches), ctx)
