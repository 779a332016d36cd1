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

After the warm-up, BatchNorm can stay on the running statistics it gathered (``freeze_batchnorm``), also ours.
A front-end trained adversarially for a few hundred CPU steps learned its robustness in the batch statistics:
the same weights kept ResNet-20 at 37.5% under PGD-10 at 2/255 with BatchNorm on batch statistics and at 8% in
eval mode, as deployed (issue 18). Trained on the statistics it is judged with, the gap closed. At a paper's
scale the running statistics track the adversarial batches closely enough that this is left off. It suits a
front-end trained through frozen guides, not JAT's, trained with a classifier from scratch: there, frozen
statistics let the U-Net's output saturate to 0/1 pixels within 10-50 steps at lr 0.05 in CPU trials, and the
classifier behind it stayed at chance; on batch statistics both trained (issue 18).

The global norm of every adversarial step's gradient can be capped (``grad_clip``), ours as well. Uncapped at
CPU scale, the robustifier's first steps (gradient norm about 900) and RTFE with frozen BatchNorm (at learning
rates 0.01 and 0.001 alike) killed the U-Net's last level: one constant output, ResNet-20 at 10-13% behind it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from bench.api import DefenseParams, FrontEnd, JobContext, ShuffledBatches


class WarmUpParams(DefenseParams):
    """The warm-up of a front-end trained with SGD from its paper's schedule: off unless asked for, and run
    with an Adam optimizer of its own, so the paper's optimizer and schedule start untouched after it."""

    #: Epochs of plain reconstruction before adversarial training (ours, not the paper's).
    warmup_epochs: int = Field(0, ge=0)
    #: Adam's learning rate during those epochs.
    warmup_lr: float = Field(1e-3, gt=0)
    #: Keep BatchNorm on the warm-up's running statistics during adversarial training (ours, not the paper's).
    freeze_batchnorm: bool = False
    #: Largest global norm of the gradient of an adversarial training step (ours, not the paper's); None: no
    #: cap.
    grad_clip: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _statistics_to_freeze(self) -> WarmUpParams:
        """Frozen without a warm-up, BatchNorm would normalize with its initial statistics (mean 0, variance
        1), which no image's activations have."""
        if self.freeze_batchnorm and not self.warmup_epochs:
            raise ValueError(
                "freeze_batchnorm keeps the running statistics of the warm-up, so it needs warmup_epochs >= 1"
            )
        return self


def adversarial_mode(frontend: nn.Module, params: WarmUpParams) -> None:
    """Put ``frontend`` in training mode for an adversarial epoch, with its BatchNorm layers in eval mode when
    ``params.freeze_batchnorm``. Called at the start of every adversarial epoch, so a resumed run and an epoch
    after a validation pass (which restores plain training mode) train the same way."""
    frontend.train()
    if params.freeze_batchnorm:
        for module in frontend.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def clip_gradients(opt: torch.optim.Optimizer, params: WarmUpParams) -> None:
    """Cap the global norm of the gradients ``opt`` is about to apply at ``params.grad_clip``, if set: over
    everything the optimizer trains, so JAT's classifier shares its U-Net's cap."""
    if params.grad_clip is not None:
        trained = [p for group in opt.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(trained, params.grad_clip)


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
