"""Robustifier: a U-Net adversarially trained in front of frozen pre-trained classifiers (Norouzzadeh, Lin,
Boytsov, Rice, Zhang, Condessa & Kolter, "Empirical robustification of pre-trained classifiers", 2021).

The loss of a batch is their Eq. 6,

    alpha · CE(h(r(x~)), y) + beta · ||x - r(x~)||² + gamma · sum over layers a of ||h_a(x) - h_a(r(x~))||²,

where r is the robustifier, h the guide, h_a the output of a named guide layer (by default the ResNet
stages; their Fig. S.6 adds the final linear layer as an option) and x~ comes from PGD that maximizes the CE
term alone (the other two are regularizers the adversary does not see, their Sec. 3.2). Each squared norm is
a mean over its elements, as the MSE losses their Fig. S.2 names: their footnote says every term is
normalized separately, and only per-element means make their best weights (alpha = 0.005, beta = 15,
gamma = 30) balance. The activation term sums the per-layer means.

Training follows their Sec. S.1: 5 PGD steps of 0.008 in an Linf ball of 0.031 (or L2 of 0.5; the step they
state is the same, so set ``attack_step`` for L2), SGD with momentum 0.9 and weight decay 5e-4 under a
one-cycle schedule peaking at 0.005 after 20% of the steps, 100 epochs with early stopping. The paper gives
neither the batch size nor the stopping rule; ours are 128 and a patience of 10 epochs without a better
robust accuracy on the validation images (under the training attack), restoring the best epoch's weights.
With several guides each batch trains through ONE guide drawn at random (their Sec. S.4), so an ensemble
costs what one guide costs.

Two options of ours, off by default, for the few hundred steps of a CPU reproduction: reconstruction epochs
before adversarial training (:mod:`defenses.reconstruction`), and a cap on the gradient's global norm
(``grad_clip``). In our CPU trials at S = 1 (2,000 images, batches of 64, through ResNet-20) the first steps'
gradient norm was about 900, the activation term at gamma = 30 dominating, and within 128 steps every ReLU
of the last U-Net level was dead: the front-end returned one constant image, the guide 12% accurate, and
every input gradient zero. Capped at 5, the same training left ResNet-20 59% accurate behind it on 500 test
images (eval mode), its output no longer constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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
from defenses.guides import capture, check_layers_run, guide_layers
from defenses.reconstruction import WarmUpParams, adversarial_mode, clip_gradients, reconstruction_epoch
from defenses.unet import UNetDefense, build_unet

#: Salts of the training and validation random streams.
TRAIN_SALT, VAL_SALT = 0x4B1, 0x4B2


class RobustifierParams(WarmUpParams):
    #: U-Net width scale S: level i has 8·S·2^i channels (4.3M / 17.3M / 69.0M parameters at S = 4 / 8 / 16
    #: on CIFAR-10; 16 gave their headline numbers).
    scale: int = Field(16, ge=1)
    #: U-Net levels below the top one; the image side must be divisible by 2^depth.
    depth: int = Field(4, ge=1)
    #: Loss weights of Eq. 6: cross-entropy, image MSE and activation MSE.
    alpha: float = Field(0.005, ge=0)
    beta: float = Field(15.0, ge=0)
    gamma: float = Field(30.0, ge=0)
    #: Guide modules whose outputs the activation term compares, by name in the guide (e.g. ``net.layer1``
    #: for a Frontline classifier; add ``net.linear`` for the final linear layer); None = the ResNet stages.
    guide_layers: list[str] | None = Field(None, min_length=1)
    #: The training attack (pixel units).
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(0.031, gt=0)
    attack_steps: int = Field(5, ge=1)
    attack_step: float = Field(0.008, gt=0)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    #: Peak learning rate of the one-cycle schedule, reached after ``warmup_fraction`` of the steps.
    lr: float = Field(0.005, gt=0)
    warmup_fraction: float = Field(0.2, gt=0, lt=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    #: Epochs without a better validation robust accuracy before training stops (only with validation
    #: images: ``n_val`` in the defense's matrix entry).
    patience: int = Field(10, ge=1)


@register_defense("robustifier")
class Robustifier(UNetDefense):
    """U-Net trained adversarially through frozen guides with CE, image and activation losses
    (Norouzzadeh et al. 2021)."""

    Params = RobustifierParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return build_unet(input_shape, params.scale, params.depth, "bilinear", sigmoid=False)

    def check(self, params: Any, input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
        super().check(params, input_shape, guides)
        for i, guide in enumerate(guides):
            names = guide_layers(guide, params.guide_layers, i, len(guides))
            check_layers_run(guide, names, input_shape, i, len(guides))

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
        layers = [guide_layers(g, params.guide_layers, i, len(guides)) for i, g in enumerate(guides)]
        gen = ctx.generator(salt=TRAIN_SALT, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        opt = torch.optim.SGD(
            frontend.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
        )
        # Momentum stays the stated 0.9 rather than cycling with the learning rate.
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=params.lr,
            total_steps=params.epochs * batches.steps,
            pct_start=params.warmup_fraction,
            cycle_momentum=False,
        )
        threat = Threat(params.norm, params.eps)
        totals = torch.zeros(4, device=device)  # ce, image mse, activation mse, adversarial accuracy
        # Early stopping's bookkeeping rides in the checkpoint too: the best weights so far, their score and
        # epoch, and how many epochs since brought nothing better.
        values = dict(totals=totals, epochs_run=0, best=None, best_score=-1.0, best_epoch=0, stale=0)
        warm = torch.optim.Adam(frontend.parameters(), lr=params.warmup_lr)
        parts: dict[str, Stateful | None] = {
            "frontend": frontend, "optimizer": opt, "scheduler": sched, "warmup_optimizer": warm
        }
        state = TrainingState(ctx, parts, {"robustifier": gen}, values)
        # Warm-up epochs come first in the same loop, so a run killed during them resumes there too.
        for epoch in batches.epochs(state, params.warmup_epochs + params.epochs, "train robustifier"):
            if epoch < params.warmup_epochs:
                reconstruction_epoch(frontend, warm, batches, ctx)
                continue
            adversarial_mode(frontend, params)
            totals.zero_()
            for x, y in batches:
                i = int(torch.randint(len(guides), (1,), generator=gen, device=device))
                objective = cross_entropy_through(frontend, [guides[i]], y)
                x_adv = pgd(objective, x, threat, params.attack_step, params.attack_steps, gen, ctx)
                terms, hits = self._loss_terms(frontend, guides[i], layers[i], x, x_adv, y, ctx)
                loss = params.alpha * terms[0] + params.beta * terms[1] + params.gamma * terms[2]
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                clip_gradients(opt, params)
                opt.step()
                sched.step()
                totals += torch.cat([terms.detach(), hits.view(1)])
            adv_epoch = epoch - params.warmup_epochs
            state.values["epochs_run"] = adv_epoch + 1
            if val is not None and self._stop_early(frontend, guides, val, params, ctx, state, adv_epoch):
                break
        if state.values["best"] is not None:
            frontend.load_state_dict(state.values["best"])
        frontend.eval()
        last = (totals / batches.steps).tolist()
        metrics = {
            "train_wall_s": state.elapsed_s(),
            "epochs_run": float(state.values["epochs_run"]),
            "final_epoch_ce": last[0],
            "final_epoch_mse": last[1],
            "final_epoch_activation_mse": last[2],
            "final_epoch_train_adv_accuracy": last[3],
        }
        if val is not None:
            metrics["best_epoch"] = float(state.values["best_epoch"])
            metrics.update(self._validate(frontend, guides, val, params, ctx))
        return metrics

    @staticmethod
    def _loss_terms(
        frontend: FrontEnd,
        guide: nn.Module,
        layers: Sequence[str],
        x: torch.Tensor,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        ctx: JobContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 6's three unweighted terms (CE, image MSE, summed per-layer activation MSE), and the fraction
        of the batch the guide still classifies right after the robustifier."""
        with ctx.autocast():
            with torch.no_grad(), capture(guide, layers) as clean:
                guide(x)
            out = frontend(x_adv)
            with capture(guide, layers) as robustified:
                logits = guide(out)
            ce = F.cross_entropy(logits.float(), y)
            mse = F.mse_loss(out.float(), x)
            act = torch.stack(
                [F.mse_loss(robustified[name][0].float(), clean[name][0].float()) for name in layers]
            ).sum()
        hits = (logits.argmax(1) == y).float().mean()
        return torch.stack([ce, mse, act]), hits

    def _stop_early(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        val: ImageData,
        params: Any,
        ctx: JobContext,
        state: TrainingState,
        epoch: int,
    ) -> bool:
        """Keep the weights of the epoch with the best validation robust accuracy; True once ``patience``
        epochs in a row brought none better."""
        score = self._validate(frontend, guides, val, params, ctx)["val_adv_accuracy"]
        values = state.values
        if score > values["best_score"]:
            best = {k: v.detach().clone() for k, v in frontend.state_dict().items()}
            values.update(best=best, best_score=score, best_epoch=epoch + 1, stale=0)
        else:
            values["stale"] += 1
        return bool(values["stale"] >= params.patience)

    @staticmethod
    def _validate(
        frontend: FrontEnd, guides: Sequence[nn.Module], val: ImageData, params: Any, ctx: JobContext
    ) -> dict[str, float]:
        threat = Threat(params.norm, params.eps)
        return robust_accuracy(
            frontend,
            guides,
            val,
            threat,
            params.attack_step,
            params.attack_steps,
            params.batch_size,
            ctx,
            VAL_SALT,
        )
