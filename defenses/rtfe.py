"""RTFE: robust transferable feature extractor (Cann, Colbert & Amer, "Robust Transferable Feature
Extractors: Learning to Defend Pre-Trained Networks Against White Box Adversaries", 2022).

A U-Net with nearest-neighbour resize-convolutions and a final 1x1 convolution + sigmoid is trained so that
the frozen guides' logits on its output for an adversarial image match their logits on the clean image:

    min over g of  mean over guides f of  huber_beta(f(g(x^)), f(x))          (their Eqs. 4, 5 and 9)

with their Eq. 6 applied to the whole logit vector d = f(g(x^)) - f(x) of an example: ½||d||₂² when
||d||₁ <= beta, else beta·(||d||₁ - beta/2), beta = 1; examples are averaged. x^ comes from Linf PGD (their
Eqs. 2-3) that maximizes the MEAN cross-entropy over all guides (Eq. 8), so with N guides every PGD step and
every training step runs through all N.

Hyperparameters are Madry et al.'s CIFAR ones, which they kept: eps = 8/255, 7 steps of 2/255 from a uniform
random start, SGD with learning rate 0.1, momentum 0.9, weight decay 2e-4, batch 128, but 60 epochs. Madry
et al. divide the learning rate by 10 after 40k and 60k steps of 128 images, which 60 CIFAR-10 epochs
(23.4k steps) never reach, so the default is a constant 0.1; ``lr_milestones`` sets decay points as fractions
of the run. The paper names no U-Net width; ours defaults to S = 8, the classic 64-to-1024-channel U-Net.

The loss has a degenerate minimum that a short run falls into: a front-end returning one constant image puts
the guide's logits at a fixed distance from the clean ones, 61-62 for akamaster's ResNet-20 on 256 CIFAR-10
training images (the mean image, or grey), while passing the PGD-7 image on costs 31.5 at 1/255, 54.4 at 2/255
and 112 at 8/255. Until the U-Net has learnt to remove the perturbation, the constant is as good or better
from 2/255 up; our CPU runs (a few hundred steps) collapsed there, so the CPU matrices train at 1/255 (issue
18). The paper, 60 epochs on all of CIFAR-10 at 8/255, reports no such collapse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from bench.api import (
    FrontEnd,
    ImageData,
    JobContext,
    ShuffledBatches,
    Stateful,
    Threat,
    TrainingState,
    register_defense,
)
from defenses.adversarial import cross_entropy_through, pgd, robust_accuracy
from defenses.reconstruction import adversarial_mode, clip_gradients, reconstruction_epoch
from defenses.unet import AdversarialUNetParams, UNetDefense, build_unet

#: Salts of the training and validation random streams.
TRAIN_SALT, VAL_SALT = 0x47F1, 0x47F2


class RTFEParams(AdversarialUNetParams):
    #: beta of the Huber logit loss (Eq. 6).
    huber_beta: float = Field(1.0, gt=0)
    epochs: int = Field(60, ge=1)


@register_defense("rtfe")
class RTFE(UNetDefense):
    """U-Net trained with a Huber logit loss against PGD through all frozen guides (Cann et al. 2022)."""

    Params = RTFEParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return build_unet(input_shape, params.scale, params.depth, "nearest", sigmoid=True)

    def fit(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        train: ImageData,
        val: ImageData | None,
        params: Any,
        ctx: JobContext,
    ) -> dict[str, float]:
        ctx.seed_everything()
        device = ctx.device
        frontend.to(device).train()
        opt = torch.optim.SGD(
            frontend.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
        )
        gen = ctx.generator(salt=TRAIN_SALT, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        total = params.epochs * batches.steps
        sched: torch.optim.lr_scheduler.LRScheduler | None = None
        if params.lr_milestones:
            milestones = sorted({round(f * total) for f in params.lr_milestones})
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=params.lr_decay)
        threat = Threat(params.norm, params.eps)
        totals = torch.zeros(2, device=device)  # logit loss, adversarial accuracy (mean over guides)
        warm = torch.optim.Adam(frontend.parameters(), lr=params.warmup_lr)
        parts: dict[str, Stateful | None] = {
            "frontend": frontend, "optimizer": opt, "scheduler": sched, "warmup_optimizer": warm
        }
        state = TrainingState(ctx, parts, {"rtfe": gen}, {"totals": totals})
        for epoch in batches.epochs(state, params.warmup_epochs + params.epochs, "train rtfe"):
            if epoch < params.warmup_epochs:
                reconstruction_epoch(frontend, warm, batches, ctx)
                continue
            adversarial_mode(frontend, params)
            totals.zero_()
            for x, y in batches:
                objective = cross_entropy_through(frontend, guides, y)
                x_adv = pgd(objective, x, threat, params.attack_step, params.attack_steps, gen, ctx)
                with ctx.autocast():
                    loss, hits = ensemble_logit_loss(frontend, guides, x, x_adv, y, params.huber_beta)
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                clip_gradients(opt, params)
                opt.step()
                if sched is not None:
                    sched.step()
                totals += torch.stack([loss.detach(), hits])
        frontend.eval()
        last = (totals / batches.steps).tolist()
        metrics = {
            "train_wall_s": state.elapsed_s(),
            "final_epoch_logit_loss": last[0],
            "final_epoch_train_adv_accuracy": last[1],
        }
        if val is not None:
            metrics.update(
                robust_accuracy(
                    frontend, guides, val, threat, params.attack_step, params.attack_steps, params.batch_size,
                    ctx, VAL_SALT,
                )
            )
        return metrics


def huber_logits(a: torch.Tensor, b: torch.Tensor, beta: float) -> torch.Tensor:
    """Cann et al.'s Eq. 6 per example, on whole logit vectors (rows): quadratic in the L2 norm of the
    difference while its L1 norm is at most ``beta``, linear in the L1 norm beyond; averaged over the batch.

    This is not ``F.huber_loss``, which applies the rule to each logit separately and averages them.
    """
    d = (a - b).flatten(1)
    l1 = d.abs().sum(1)
    quadratic = 0.5 * d.pow(2).sum(1)
    linear = beta * (l1 - beta / 2)
    return torch.where(l1 <= beta, quadratic, linear).mean()


def ensemble_logit_loss(
    frontend: nn.Module,
    guides: Sequence[nn.Module],
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: the Huber logit loss of each guide between its logits on the defended adversarial images and
    on the clean ones, averaged over guides; and the guides' mean accuracy on the defended images."""
    out = frontend(x_adv)
    losses, hits = [], []
    for guide in guides:
        with torch.no_grad():
            target = guide(x).float()
        logits = guide(out).float()
        losses.append(huber_logits(logits, target, beta))
        hits.append((logits.argmax(1) == y).float().mean())
    return torch.stack(losses).mean(), torch.stack(hits).mean().detach()
