"""JAT: joint adversarial training of a pre-processing front-end and its classifier, both from scratch (Zhou,
Wang, Gao, Han, Yu, Wang & Liu, "Improving White-box Robustness of Pre-processing Defenses via Joint
Adversarial Training", 2021), as Cann et al. (2022) re-implement it as the baseline RTFE is compared with.

Cann et al. train JAT's pre-processor "jointly on CIFAR10 from scratch with a randomly initialized ResNet18",
with a U-Net "for all defenses that require a pre-processing network", keeping "the hyperparameter
configurations reported in the original papers to the extent possible". The settings they do state are Madry
et al.'s PGD adversarial training, which they use for AT and (but for its 60 epochs) RTFE; so this is Madry
et al.'s adversarial training of the composite classifier f(g(x)), one optimizer updating both networks:

    min over g, f of  mean over classifiers f_i of CE(f_i(g(x^)), y),   x^ = PGD maximizing that same loss

With N classifiers (an ensemble of guides) every one is new and trained with the one front-end, as RTFE's
Eq. 8/9 average over its guides. The front-end is RTFE's U-Net (nearest-neighbour resize-convolutions, a final
1x1 convolution and a sigmoid); the paper names no width, ours defaults to S = 8 like RTFE's. Defaults are
Madry et al.'s CIFAR-10 run, as the ``madry-at`` recipe's: Linf eps = 8/255, 7 steps of 2/255 from a uniform
random start, SGD at 0.1 with momentum 0.9 and weight decay 2e-4, batch 128, the learning rate divided by 10
after half and three quarters of 205 epochs (their 80k steps of 128 images on CIFAR-10's 50k). Like the
other front-ends here (and unlike ``madry-at``), training does not augment: set ``epochs`` and friends from
the matrix.

As in ``madry-at``, the attack runs on the networks in train mode (BatchNorm on the batch's statistics), and
the running statistics its forward passes would update are put back, so only the training step moves them.
The job keeps the trained classifiers beside the front-end; evaluated natively, the front-end is judged with
them, and transferred, with other (independently trained) classifiers, Cann et al.'s Table 2 "JAT" rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import torch
import torch.nn.functional as F
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
TRAIN_SALT, VAL_SALT = 0x1A71, 0x1A72


class JATParams(AdversarialUNetParams):
    #: 80k steps of 128 images on CIFAR-10's 50k training images.
    epochs: int = Field(205, ge=1)
    #: 40k and 60k of 80k steps.
    lr_milestones: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.5, 0.75])


@register_defense("jat")
class JAT(UNetDefense):
    """U-Net and classifier adversarially trained together from scratch (Zhou et al. 2021, as Cann et al.
    2022 use it); not model-agnostic: it trains its own classifier."""

    Params = JATParams
    trains_classifier = True

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
        """Train ``frontend`` and the new classifiers ``guides`` together; both are left trained, in eval
        mode."""
        ctx.seed_everything()
        device = ctx.device
        modules: list[nn.Module] = [frontend.to(device).train(), *(g.to(device).train() for g in guides)]
        opt = torch.optim.SGD(
            [p for m in modules for p in m.parameters()],
            lr=params.lr,
            momentum=params.momentum,
            weight_decay=params.weight_decay,
        )
        gen = ctx.generator(salt=TRAIN_SALT, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        total = params.epochs * batches.steps
        milestones = sorted({round(f * total) for f in params.lr_milestones})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=params.lr_decay)
        threat = Threat(params.norm, params.eps)
        totals = torch.zeros(2, device=device)  # cross-entropy, adversarial accuracy (mean over classifiers)
        parts: dict[str, Stateful | None] = {"frontend": frontend}
        parts.update({f"classifier-{i}": g for i, g in enumerate(guides)})
        # The warm-up reconstructs through the U-Net alone: the classifiers start training with it after.
        warm = torch.optim.Adam(frontend.parameters(), lr=params.warmup_lr)
        parts.update(optimizer=opt, scheduler=sched, warmup_optimizer=warm)
        state = TrainingState(ctx, parts, {"jat": gen}, {"totals": totals})
        for epoch in batches.epochs(state, params.warmup_epochs + params.epochs, "train jat"):
            if epoch < params.warmup_epochs:
                reconstruction_epoch(frontend, warm, batches, ctx)
                continue
            adversarial_mode(frontend, params)
            totals.zero_()
            for x, y in batches:
                with running_statistics_kept(modules):
                    objective = cross_entropy_through(frontend, guides, y)
                    x_adv = pgd(objective, x, threat, params.attack_step, params.attack_steps, gen, ctx)
                with ctx.autocast():
                    loss, hits = joint_loss(frontend, guides, x_adv, y)
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                clip_gradients(opt, params)
                opt.step()
                sched.step()
                totals += torch.stack([loss.detach(), hits])
        for m in modules:
            m.eval()
        last = (totals / batches.steps).tolist()
        metrics = {
            "train_wall_s": state.elapsed_s(),
            "final_epoch_ce": last[0],
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


def joint_loss(
    frontend: nn.Module, classifiers: Sequence[nn.Module], x_adv: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean over classifiers of the cross-entropy of the defended adversarial images, which both the
    front-end and the classifiers descend; and the classifiers' mean accuracy on them."""
    out = frontend(x_adv)
    losses, hits = [], []
    for classifier in classifiers:
        logits = classifier(out).float()
        losses.append(F.cross_entropy(logits, y))
        hits.append((logits.argmax(1) == y).float().mean())
    return torch.stack(losses).mean(), torch.stack(hits).mean().detach()


@contextmanager
def running_statistics_kept(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put back the buffers (BatchNorm's running statistics and counters) that forward passes in train mode
    update, so the attack's passes leave no trace in the models the training step then updates."""
    buffers = [b for m in modules for b in m.buffers()]
    saved = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)
