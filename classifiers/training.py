"""The built-in training recipes: Adam for the MNIST family, SGD with a one-cycle schedule for CIFAR."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.api import Recipe, RecipeParams, register_recipe


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


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per-example random crop after zero padding, and horizontal flip, as one gather on the device."""
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
    flip = torch.rand(n, generator=gen, device=dev) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
