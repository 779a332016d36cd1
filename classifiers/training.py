"""The built-in training recipes: Adam for the MNIST family, SGD with a one-cycle schedule for CIFAR, and
Madry et al.'s PGD adversarial training."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.api import Recipe, RecipeParams, Threat, random_start, register_recipe, step_direction


class MnistParams(RecipeParams):
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)


@register_recipe("mnist")
class MnistRecipe(Recipe):
    """Adam at 1e-3 with cosine decay, no augmentation: MNIST and Fashion-MNIST."""

    Params = MnistParams
    full_scale_epochs = 10

    def make_optimizer(
        self, model: nn.Module, params: Any, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs * steps_per_epoch)
        return opt, sched


class CifarParams(RecipeParams):
    epochs: int = Field(200, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    #: Zero-padding before the random 32x32 crop (standard CIFAR augmentation, with horizontal flips).
    crop_padding: int = Field(4, ge=0)


@register_recipe("cifar")
class CifarRecipe(Recipe):
    """SGD + Nesterov momentum, one-cycle or cosine schedule, random crop + flip: CIFAR-10/100."""

    Params = CifarParams
    full_scale_epochs = 200

    def make_optimizer(
        self, model: nn.Module, params: Any, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=params.lr,
            momentum=params.momentum,
            nesterov=params.momentum > 0,
            weight_decay=params.weight_decay,
        )
        total = params.epochs * steps_per_epoch
        sched: torch.optim.lr_scheduler.LRScheduler
        if params.schedule == "onecycle":
            # cycle_momentum off: the configured momentum is the momentum used, as with the cosine schedule.
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=params.lr, total_steps=total, pct_start=0.15, cycle_momentum=False
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return opt, sched

    def augment(self, x: torch.Tensor, params: Any, gen: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, params.crop_padding, gen)


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Per-example random crop after zero padding, and horizontal flip (unless ``flip`` is off: digits are
    not mirror-symmetric), as one gather on the device."""
    n, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=dev)
        left = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=dev)
        rows = (top + torch.arange(h, device=dev)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        x = padded.gather(2, rows)
        cols = (left + torch.arange(w, device=dev)).view(n, 1, 1, w).expand(n, c, h, w)
        x = x.gather(3, cols)
    if not flip:
        return x
    flipped = torch.rand(n, generator=gen, device=dev) < 0.5
    return torch.where(flipped.view(n, 1, 1, 1), x.flip(3), x)


class MadryATParams(RecipeParams):
    #: 80k steps of 128 images on CIFAR-10's 50k training images.
    epochs: int = Field(205, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(2e-4, ge=0)
    #: Fractions of the run after which the learning rate is multiplied by ``lr_decay`` (40k and 60k of 80k).
    lr_milestones: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.5, 0.75])
    lr_decay: float = Field(0.1, gt=0, le=1)
    #: Zero-padding before the random crop; 0 with ``flip: false`` trains on the images as they are (MNIST).
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    #: The training attack (pixel units): CIFAR-10's 7 steps of 2/255 in 8/255; MNIST's is 40 steps of 0.01 in
    #: 0.3.
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(8 / 255, gt=0)
    attack_steps: int = Field(7, ge=1)
    attack_step: float = Field(2 / 255, gt=0)


@register_recipe("madry-at")
class MadryATRecipe(Recipe):
    """PGD adversarial training (Madry et al. 2018): every step trains on PGD examples of its batch.

    Defaults are their CIFAR-10 setting: momentum SGD at 0.1 (no Nesterov), weight decay 2e-4, divided by 10
    after half and three quarters of the run, random crop and flip, Linf PGD of 7 steps of 2/255 within 8/255
    from a uniform random start. For MNIST set ``eps: 0.3, attack_steps: 40, attack_step: 0.01,
    crop_padding: 0, flip: false`` (their MNIST run used Adam at 1e-4, which this recipe does not offer).

    The attack runs on the model as it trains, in train mode as theirs did (BatchNorm on the batch's own
    statistics, dropout on), but the running statistics the attack's forward passes would update are put
    back: only the training step itself moves them.
    """

    Params = MadryATParams
    full_scale_epochs = 205

    def make_optimizer(
        self, model: nn.Module, params: Any, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        opt = torch.optim.SGD(
            model.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
        )
        total = params.epochs * steps_per_epoch
        milestones = sorted({round(f * total) for f in params.lr_milestones})
        return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=params.lr_decay)

    def augment(self, x: torch.Tensor, params: Any, gen: torch.Generator) -> torch.Tensor:
        if params.crop_padding == 0 and not params.flip:
            return x
        return random_crop_flip(x, params.crop_padding, gen, flip=params.flip)

    def train_inputs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any, gen: torch.Generator
    ) -> torch.Tensor:
        threat = Threat(params.norm, params.eps)
        buffers = list(model.buffers())
        saved = [b.detach().clone() for b in buffers]
        adv = random_start(x, threat, gen)
        for _ in range(params.attack_steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), y)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = threat.project(x, adv.detach() + params.attack_step * step_direction(grad, threat))
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)
        return adv.detach()
