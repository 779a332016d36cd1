"""RTFE: Madry's hyperparameters as defaults, the vector-level Huber logit loss of Eq. 6, PGD and the loss
over ALL guides (mean CE, Eq. 8; mean logit loss, Eq. 9), valid pixels out, a few steps lower the loss, and a
killed fit resumes bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from bench.api import DEFENSES, Checkpoints, ConfigError, DatasetInfo, ImageData, JobContext
from defenses.adversarial import cross_entropy_through
from defenses.rtfe import RTFE, RTFEParams, ensemble_logit_loss, huber_logits
from defenses.unet import BoundedUNet
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
#: A tiny U-Net, two PGD steps, 96 images in batches of 32: three steps an epoch.
TINY: dict[str, Any] = {"scale": 1, "depth": 2, "epochs": 2, "batch_size": 32, "attack_steps": 2, "lr": 0.05}


def guide(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    return net.eval().requires_grad_(False)


def images(n: int, seed: int) -> ImageData:
    x = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    info = DatasetInfo("tiny", 3, SHAPE, (0.5,), (0.5,), n, 0)
    return ImageData((x * 255).round().to(torch.uint8), guide()(x).argmax(1), f"tiny{seed}", info)


def fit(
    ctx: JobContext, guides: list[nn.Module] | None = None, val: ImageData | None = None, **overrides: Any
) -> tuple[BoundedUNet, dict[str, float]]:
    defense = RTFE()
    params = RTFEParams.model_validate({**TINY, **overrides})
    torch.manual_seed(1)
    frontend = defense.build(params, SHAPE)
    assert isinstance(frontend, BoundedUNet)
    metrics = defense.fit(frontend, guides or [guide()], images(96, 1), val, params, ctx)
    return frontend, metrics


def test_defaults_are_madrys_hyperparameters_for_60_epochs() -> None:
    p = RTFEParams()
    assert (p.norm, p.eps, p.attack_steps, p.attack_step) == ("linf", 8 / 255, 7, 2 / 255)
    assert (p.lr, p.momentum, p.weight_decay, p.batch_size, p.epochs) == (0.1, 0.9, 2e-4, 128, 60)
    assert p.huber_beta == 1.0 and p.lr_milestones == []
    assert DEFENSES.get("rtfe") is RTFE
    frontend = RTFE().build(RTFEParams(scale=1), (3, 32, 32))
    assert isinstance(frontend, BoundedUNet)
    with torch.no_grad():
        out = frontend.eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 3, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_huber_is_eq_6_on_whole_logit_vectors() -> None:
    b = torch.zeros(2, 3)
    # Row 1: L1 norm 0.6 <= 1, quadratic: 0.5 * (0.09 + 0.04 + 0.01). Row 2: L1 norm 3 > 1: 1 * (3 - 0.5).
    a = torch.tensor([[0.3, -0.2, 0.1], [1.0, -1.5, 0.5]])
    expected = (0.5 * (0.09 + 0.04 + 0.01) + 2.5) / 2
    assert float(huber_logits(a, b, 1.0)) == pytest.approx(expected)
    # Element-wise Huber averaged over logits is a different loss.
    assert float(F.huber_loss(a, b, delta=1.0)) != pytest.approx(expected)
    # beta scales the switch point and the linear part: L1 norm 3 <= 4, so both rows are quadratic at beta 4.
    assert float(huber_logits(a, b, 4.0)) == pytest.approx(0.5 * (0.14 + 1 + 2.25 + 0.25) / 2)


def test_pgd_ascends_the_mean_cross_entropy_of_all_guides() -> None:
    guides = [guide(0), guide(1), guide(2)]
    frontend = RTFE().build(RTFEParams.model_validate(TINY), SHAPE).eval()
    x, y = torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        together = cross_entropy_through(frontend, guides, y)(x)
        alone = [cross_entropy_through(frontend, [g], y)(x) for g in guides]
    assert float(together) == pytest.approx(float(torch.stack(alone).mean()), rel=1e-6)


def test_the_logit_loss_is_averaged_over_guides() -> None:
    guides = [guide(0), guide(1)]
    frontend = RTFE().build(RTFEParams.model_validate(TINY), SHAPE).eval()
    x, y = torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 0])
    x_adv = (x + 0.05).clamp(0, 1)
    with torch.no_grad():
        together, hits = ensemble_logit_loss(frontend, guides, x, x_adv, y, 1.0)
        alone = [ensemble_logit_loss(frontend, [g], x, x_adv, y, 1.0) for g in guides]
    assert float(together) == pytest.approx((float(alone[0][0]) + float(alone[1][0])) / 2, rel=1e-6)
    assert float(hits) == pytest.approx((float(alone[0][1]) + float(alone[1][1])) / 2)


def test_every_step_runs_through_every_guide() -> None:
    calls = [0, 0]
    guides = [guide(0), guide(1)]
    for i, g in enumerate(guides):
        g.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    fit(JobContext(seed=0), guides, epochs=1)
    # Per step: 2 PGD passes, the clean target and the defended logits, for each guide.
    assert calls == [3 * 4, 3 * 4]


def test_a_few_steps_lower_the_logit_loss() -> None:
    data = images(96, 1)
    x, y = data.float_images()[:32], data.labels[:32]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    x_adv = (x + 0.03 * torch.sign(noise)).clamp(0, 1)

    def loss(frontend: nn.Module) -> float:
        frontend.train()
        with torch.no_grad():
            value, _ = ensemble_logit_loss(frontend, [guide()], x, x_adv, y, 1.0)
        return float(value)

    torch.manual_seed(1)
    before = loss(RTFE().build(RTFEParams.model_validate(TINY), SHAPE))
    trained, metrics = fit(JobContext(seed=0), epochs=6)
    assert loss(trained) < 0.75 * before
    assert metrics["final_epoch_logit_loss"] > 0 and 0 <= metrics["final_epoch_train_adv_accuracy"] <= 1


def test_validation_numbers_are_reported_only_with_validation_images() -> None:
    _, without = fit(JobContext(seed=0), epochs=1)
    _, metrics = fit(JobContext(seed=0), val=images(20, 5), epochs=1)
    assert set(metrics) - set(without) == {"val_clean_accuracy", "val_adv_accuracy"}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="lr_milestones.0"):
        RTFEParams(lr_milestones=[1.5])
    with pytest.raises(ConfigError, match="28 -> 14 -> 7 -> 3 -> 1"):
        RTFE().check(RTFEParams(), (1, 28, 28), [])
    wide = nn.Sequential(nn.Flatten(), nn.Linear(128, 3))
    with pytest.raises(ConfigError, match="guide 2 of 2 cannot take"):
        RTFE().check(RTFEParams.model_validate(TINY), SHAPE, [guide(), wide])


@pytest.mark.parametrize(("warmup_epochs", "freeze_batchnorm"), [(0, False), (1, False), (1, True)])
def test_a_fit_killed_part_way_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, warmup_epochs: int, freeze_batchnorm: bool
) -> None:
    """Killed on the second step of the second epoch, with a learning-rate decay inside the run, so the
    scheduler's state is resumed too; with a warm-up epoch, that second epoch is the first adversarial one
    and the warm-up's optimizer is resumed as well; BatchNorm, when frozen, stays frozen after resuming."""
    settings: dict[str, Any] = {"epochs": 3 - warmup_epochs, "lr_milestones": [0.5]}
    settings.update(warmup_epochs=warmup_epochs, freeze_batchnorm=freeze_batchnorm)
    expected, expected_metrics = fit(JobContext(seed=2), [guide(0), guide(1)], **settings)
    with pytest.raises(Killed):
        killed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(4))
        fit(killed, [guide(0), guide(1)], **settings)
    torch.manual_seed(999)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    weights, metrics = fit(resumed, [guide(0), guide(1)], **settings)
    assert resumed.bar.skipped == 3 and resumed.bar.run == 6
    state, want = weights.state_dict(), expected.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want), "resumed weights differ"
    assert {k: v for k, v in metrics.items() if "wall" not in k} == {
        k: v for k, v in expected_metrics.items() if "wall" not in k
    }
