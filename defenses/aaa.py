"""AAA: Adversarially-Trained Autoencoder Augmentation (Vaishnavi, Eykholt, Prakash & Rahmati, 2019).

A convolutional autoencoder is prepended to frozen classifiers and trained with PGD adversarial training
end to end through them: loss = CE(guide(AE(x_adv)), y) + lambda * MSE(AE(x_adv), x), with x_adv found by
PGD on the whole pipeline. With several guides, one is drawn at random per batch, so a single autoencoder
learns to protect all of them in one training session.

The autoencoder's exact layers are not given in the sources available to us; ours is a small conv
encoder-decoder (two stride-2 stages, batch norm, sigmoid output so images stay in [0,1]) whose width is a
parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.api import (
    Defense,
    DefenseParams,
    FrontEnd,
    ImageData,
    JobContext,
    Progress,
    Threat,
    TrainingState,
    random_start,
    register_defense,
    step_direction,
)


class ConvAutoencoder(FrontEnd):
    """Conv encoder-decoder with batch norm; without it the plain stack sits at the mean image for hundreds
    of steps (the default initialization shrinks activations layer by layer), which wastes a CPU budget."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            *_conv_bn(channels, w, stride=1),
            *_conv_bn(w, 2 * w, stride=2),
            *_conv_bn(2 * w, 2 * w, stride=2),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class AAAParams(DefenseParams):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    #: Weight of the reconstruction term MSE(AE(x_adv), x).
    recon_weight: float = Field(1.0, ge=0)
    width: int = Field(32, ge=1)
    #: Threat the autoencoder is trained against (pixel units).
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(0.3, gt=0)
    attack_steps: int = Field(10, ge=1)
    #: PGD step size during training, as a multiple of eps.
    attack_rel_step: float = Field(0.25, gt=0)
    #: Epochs of plain reconstruction before adversarial training: an untrained decoder outputs grey, which
    #: gives the guides no signal, and adversarial training from there tends to collapse.
    warmup_epochs: int = Field(1, ge=0)
    #: Epochs over which the training radius grows linearly from 0 to eps (a standard curriculum).
    eps_ramp_epochs: float = Field(1.0, ge=0)


@register_defense("aaa")
class AAA(Defense):
    """Adversarially trained autoencoder (Vaishnavi et al. 2019), PGD-trained through frozen guides."""

    Params = AAAParams
    trainable = True
    needs_data = True

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return ConvAutoencoder(input_shape[0], params.width)

    def epochs_at_full_scale(self, params: Any) -> int | None:
        return int(AAAParams.model_fields["epochs"].default)

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
        opt = torch.optim.Adam(frontend.parameters(), lr=params.lr)
        gen = ctx.generator(salt=0xAA, device=device)
        images, labels = train.images.to(device), train.labels.to(device)
        n = len(train)
        steps_per_epoch = math.ceil(n / params.batch_size)
        totals = torch.zeros(3, device=device)  # ce, mse, adversarial accuracy of the last epoch
        # Warm-up epochs come first in the same loop, so a run killed during them resumes there too.
        state = TrainingState(ctx, {"frontend": frontend, "optimizer": opt}, {"aaa": gen}, {"totals": totals})
        epochs = params.warmup_epochs + params.epochs
        bar = ctx.progress(epochs * steps_per_epoch, "train aaa", unit="step")
        bar.update(state.start * steps_per_epoch)
        ramp_steps = max(1.0, params.eps_ramp_epochs * steps_per_epoch)
        for epoch in state.epochs(epochs):
            order = torch.randperm(n, generator=gen, device=device)
            if epoch < params.warmup_epochs:
                self._warm_up(frontend, opt, images, order, params, ctx, bar)
                continue
            totals.zero_()
            for s in range(steps_per_epoch):
                idx = order[s * params.batch_size : (s + 1) * params.batch_size]
                x, y = images[idx].float().div_(255.0), labels[idx]
                guide = guides[int(torch.randint(len(guides), (1,), generator=gen, device=device))]
                step = (epoch - params.warmup_epochs) * steps_per_epoch + s
                eps = params.eps * min(1.0, (step + 1) / ramp_steps)
                threat = Threat(params.norm, eps)
                x_adv = _pgd(
                    frontend, guide, x, y, threat, params.attack_rel_step * eps, params.attack_steps, gen
                )
                with ctx.autocast():
                    recon = frontend(x_adv)
                    logits = guide(recon)
                    ce = F.cross_entropy(logits.float(), y)
                    mse = F.mse_loss(recon.float(), x)
                    loss = ce + params.recon_weight * mse
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                opt.step()
                totals += torch.stack([ce.detach(), mse.detach(), (logits.argmax(1) == y).float().mean()])
                bar.update(1)
        bar.close()
        frontend.eval()
        last = (totals / steps_per_epoch).tolist()
        metrics = {
            "train_wall_s": state.elapsed_s(),
            "final_epoch_ce": last[0],
            "final_epoch_mse": last[1],
            "final_epoch_train_adv_accuracy": last[2],
        }
        if val is not None:
            metrics.update(validate(frontend, guides, val, params, ctx))
        return metrics

    @staticmethod
    def _warm_up(
        frontend: FrontEnd,
        opt: torch.optim.Optimizer,
        images: torch.Tensor,
        order: torch.Tensor,
        params: Any,
        ctx: JobContext,
        bar: Progress,
    ) -> None:
        """One epoch of plain reconstruction."""
        for s in range(0, images.shape[0], params.batch_size):
            x = images[order[s : s + params.batch_size]].float().div_(255.0)
            with ctx.autocast():
                loss = F.mse_loss(frontend(x).float(), x)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            bar.update(1)


def validate(
    frontend: FrontEnd, guides: Sequence[nn.Module], val: ImageData, params: Any, ctx: JobContext
) -> dict[str, float]:
    """Held-out accuracy through every guide, clean and under the training attack at the full radius, and
    reconstruction error: what a stopping rule or a plateau schedule watches. Draws come from a generator of
    their own, so validating never shifts training's random streams."""
    gen = ctx.generator(salt=0xAB, device=ctx.device)
    threat, alpha = Threat(params.norm, params.eps), params.attack_rel_step * params.eps
    clean = adv = 0
    mse = 0.0
    for x, y in val.batches(params.batch_size, ctx.device):
        with torch.no_grad():
            recon = frontend(x)
            mse += float(F.mse_loss(recon, x, reduction="sum"))
        for guide in guides:
            with torch.no_grad():
                clean += int((guide(recon).argmax(1) == y).sum())
            x_adv = _pgd(frontend, guide, x, y, threat, alpha, params.attack_steps, gen)
            with torch.no_grad():
                adv += int((guide(frontend(x_adv)).argmax(1) == y).sum())
    judged = len(val) * len(guides)
    return {
        "val_clean_accuracy": clean / judged,
        "val_adv_accuracy": adv / judged,
        "val_mse": mse / val.images.numel(),
    }


def _pgd(
    frontend: nn.Module,
    guide: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: Threat,
    alpha: float,
    steps: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """Training-time PGD through the current autoencoder and the drawn guide; the final iterate is used."""
    adv = random_start(x, threat, gen)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(guide(frontend(adv)), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = threat.project(x, adv.detach() + alpha * step_direction(grad, threat))
    return adv.detach()
