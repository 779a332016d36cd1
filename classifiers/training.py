"""The built-in training recipes: Adam for the MNIST family, SGD with a one-cycle schedule for CIFAR, and
Madry et al.'s PGD adversarial training.

Any of them trains Cohen et al. (2019)'s Gaussian-augmented classifier, the base classifier randomized
smoothing certifies best, with ``noise_sigma`` set (a field every recipe's parameters inherit); such a
classifier counts as trained for robustness (:meth:`bench.api.Recipe.robust_training`).
"""

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
    crop_padding: 0, flip: false``; their MNIST run, with Adam at 1e-4, is ``madry-at-mnist``.

    The attack runs on the model as it trains, in train mode as theirs did (BatchNorm on the batch's own
    statistics, dropout on), but the running statistics the attack's forward passes would update are put
    back: only the training step itself moves them.
    """

    Params = MadryATParams
    full_scale_epochs = 205
    retrains_for_robustness = True

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
        return pgd_examples(model, x, y, params, gen)


def pgd_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any, gen: torch.Generator
) -> torch.Tensor:
    """Madry et al.'s training examples: ``params.attack_steps`` PGD steps of ``params.attack_step`` in the
    ``params.norm`` ball of ``params.eps`` from a uniform random start, on the model in train mode, with
    the running statistics its forward passes would update put back."""
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


class MadryMnistATParams(RecipeParams):
    #: 100k steps of 50 images on MNIST's 60k training images.
    epochs: int = Field(83, ge=1)
    batch_size: int = Field(50, ge=1)
    lr: float = Field(1e-4, gt=0)
    #: The training attack (pixel units): 40 steps of 0.01 in Linf 0.3.
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(0.3, gt=0)
    attack_steps: int = Field(40, ge=1)
    attack_step: float = Field(0.01, gt=0)
    #: Epochs over which the training radius grows linearly from 0 to eps; 0, Madry et al.'s, trains at eps
    #: from the first step. A run of a few hundred steps needs the ramp: at eps 0.3 from the start, mnist-b
    #: stayed at chance after 312 steps of Adam at 1e-3.
    eps_ramp_epochs: float = Field(0.0, ge=0)


@register_recipe("madry-at-mnist")
class MadryMnistATRecipe(Recipe):
    """PGD adversarial training as Madry et al. ran it on MNIST (their mnist_challenge ``config.json`` and
    ``train.py``): Adam at a constant 1e-4, batches of 50 for 100k steps, no augmentation, Linf PGD of 40
    steps of 0.01 within 0.3 from a uniform random start. The AT baseline of Vaishnavi et al.'s Tables 2, 4
    and 5, on MNIST and Fashion-MNIST (set ``eps: 0.2`` there).

    With ``eps_ramp_epochs`` the radius grows with the optimizer's step count, read from Adam's own state,
    which a resumed run restores with the optimizer: the ramp picks up where the killed run left it.
    """

    Params = MadryMnistATParams
    full_scale_epochs = 83
    retrains_for_robustness = True

    def __init__(self) -> None:
        self._opt: torch.optim.Optimizer | None = None
        self._ramp_steps = 1.0

    def make_optimizer(
        self, model: nn.Module, params: Any, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        self._opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        self._ramp_steps = max(1.0, params.eps_ramp_epochs * steps_per_epoch)
        return self._opt, None

    def train_inputs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any, gen: torch.Generator
    ) -> torch.Tensor:
        if params.eps_ramp_epochs > 0:
            eps = params.eps * min(1.0, (self._steps_done() + 1) / self._ramp_steps)
            params = params.model_copy(update={"eps": eps})
        return pgd_examples(model, x, y, params, gen)

    def _steps_done(self) -> int:
        assert self._opt is not None, "make_optimizer runs before the first training step"
        state = self._opt.state.get(self._opt.param_groups[0]["params"][0])
        return int(state["step"]) if state else 0
