"""The reconstruction warm-up: it moves an untrained U-Net towards the identity on clean images, and is off by
default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.api import JobContext, ShuffledBatches
from defenses.reconstruction import WarmUpParams, reconstruction_epoch
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
