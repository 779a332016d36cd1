"""The reconstruction warm-up: it moves an untrained U-Net towards the identity on clean images, and is off by
default; BatchNorm frozen after it keeps the warm-up's statistics through adversarial training."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from bench.api import DEFENSES, DatasetInfo, ImageData, JobContext, ShuffledBatches
from defenses.reconstruction import WarmUpParams, adversarial_mode, reconstruction_epoch
from defenses.unet import build_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reconstruction_epochs_bring_an_unbounded_unet_towards_the_identity() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    frontend = build_unet((1, 8, 8), 1, 2, "bilinear", sigmoid=False)
    ctx = JobContext(seed=0)
    batches = ShuffledBatches(ctx, ctx.generator(salt=1), 16, x, torch.zeros(64, dtype=torch.long))
    opt = torch.optim.Adam(frontend.parameters(), lr=1e-2)

    def error() -> float:
        frontend.train()
        with torch.no_grad():
            return float(F.mse_loss(frontend(x), x))

    before = error()
    losses = [reconstruction_epoch(frontend, opt, batches, ctx) for _ in range(6)]
    assert losses[-1] < 0.25 * losses[0]
    assert error() < 0.25 * before


def test_it_is_off_unless_asked_for() -> None:
    assert WarmUpParams().warmup_epochs == 0
    assert not WarmUpParams().freeze_batchnorm


def test_freezing_batchnorm_needs_a_warm_up() -> None:
    with pytest.raises(ValidationError, match="needs warmup_epochs >= 1"):
        WarmUpParams(freeze_batchnorm=True)
    assert WarmUpParams(freeze_batchnorm=True, warmup_epochs=1).freeze_batchnorm


@pytest.mark.parametrize("freeze", [False, True])
def test_adversarial_mode_leaves_only_batchnorm_in_eval_mode_when_frozen(freeze: bool) -> None:
    frontend = build_unet((1, 8, 8), 1, 2, "nearest", sigmoid=True).eval()
    adversarial_mode(frontend, WarmUpParams(freeze_batchnorm=freeze, warmup_epochs=1))
    norms = [m for m in frontend.modules() if isinstance(m, nn.BatchNorm2d)]
    others = [m for m in frontend.modules() if not isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.training is not freeze for m in norms)
    assert all(m.training for m in others)


def _tiny_fit(defense: str, **settings: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The BatchNorm running statistics and the weights of a tiny U-Net front-end after a fit on random
    images."""
    shape = (1, 8, 8)
    torch.manual_seed(0)
    guide = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval().requires_grad_(False)
    x = torch.rand((64, *shape), generator=torch.Generator().manual_seed(1))
    info = DatasetInfo("tiny", 3, shape, (0.5,), (0.5,), 64, 0)
    train = ImageData((x * 255).round().to(torch.uint8), guide(x).argmax(1), "tiny", info)
    plugin = DEFENSES.get(defense)()
    params = plugin.Params.model_validate(
        {"scale": 1, "depth": 2, "batch_size": 32, "attack_steps": 1, "warmup_epochs": 1, **settings}
    )
    torch.manual_seed(2)
    frontend = plugin.build(params, shape)
    plugin.fit(frontend, [guide], train, None, params, JobContext(seed=0))
    stats = [b.clone() for n, b in frontend.named_buffers() if n.endswith(("running_mean", "running_var"))]
    return stats, [p.detach().clone() for p in frontend.parameters()]


@pytest.mark.parametrize(
    ("defense", "own"), [("robustifier", {"guide_layers": ["1"]}), ("rtfe", {}), ("jat", {})]
)
def test_frozen_batchnorm_keeps_the_warm_ups_statistics_while_the_weights_train(
    defense: str, own: dict[str, Any]
) -> None:
    """One adversarial epoch or two: with BatchNorm frozen the running statistics are the warm-up's either
    way, while the weights (BatchNorm's affine ones included) go on training; unfrozen, they move."""
    one_stats, one_weights = _tiny_fit(defense, epochs=1, freeze_batchnorm=True, **own)
    two_stats, two_weights = _tiny_fit(defense, epochs=2, freeze_batchnorm=True, **own)
    assert one_stats and all(torch.equal(a, b) for a, b in zip(one_stats, two_stats, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(one_weights, two_weights, strict=True))
    unfrozen, _ = _tiny_fit(defense, epochs=1, **own)
    assert not all(torch.equal(a, b) for a, b in zip(one_stats, unfrozen, strict=True))


@pytest.mark.parametrize(
    ("defense", "own"), [("robustifier", {"guide_layers": ["1"]}), ("rtfe", {}), ("jat", {})]
)
def test_grad_clip_caps_every_adversarial_step(defense: str, own: dict[str, Any]) -> None:
    """Capped far below the gradient's norm, the adversarial epoch moves the weights by at most lr times the
    cap per step, so two tiny caps end within a hair of each other; uncapped, the same epoch ends far away."""
    settings = {"epochs": 1, "lr": 0.05, "weight_decay": 0.0, **own}
    _, tiny = _tiny_fit(defense, grad_clip=1e-9, **settings)
    _, twice = _tiny_fit(defense, grad_clip=2e-9, **settings)
    _, free = _tiny_fit(defense, **settings)
    gap = max(float((a - b).abs().max()) for a, b in zip(tiny, twice, strict=True))
    free_gap = max(float((a - b).abs().max()) for a, b in zip(tiny, free, strict=True))
    assert gap < 1e-6 < 1e-3 < free_gap
