"""IRS-Net: the paper's settings as defaults, noise added after the front-end's OWN normalization (declared
with its std, so the engine draws it at σ·s_c in pixels whatever the classifier normalizes with), the U-Net
back to valid pixels, Eq. 3's λ·CE + MAE, training on that noise lowering the loss, and a killed fit resuming
bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from bench.api import (
    DEFENSES,
    Checkpoints,
    Classifier,
    ConfigError,
    DatasetInfo,
    GaussianSmoothing,
    ImageData,
    JobContext,
)
from bench.certify import noise_for
from defenses.irs import IMAGENET_MEAN, IMAGENET_STD, IRS, IRSFrontEnd, IRSParams, loss_terms
from defenses.unet import BoundedUNet
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (3, 8, 8)
#: A tiny U-Net, 96 images in batches of 32: three steps an epoch.
TINY: dict[str, Any] = {"scale": 1, "depth": 2, "epochs": 2, "batch_size": 32, "lr": 0.05}


def guide(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, 3))
    return net.eval().requires_grad_(False)


def images(n: int, seed: int, shape: tuple[int, int, int] = SHAPE) -> ImageData:
    x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))
    info = DatasetInfo("tiny", 3, shape, (0.5,), (0.5,), n, 0)
    return ImageData((x * 255).round().to(torch.uint8), guide()(x).argmax(1), f"tiny{seed}", info)


def build(shape: tuple[int, int, int] = SHAPE, **overrides: Any) -> IRSFrontEnd:
    frontend = IRS().build(IRSParams.model_validate({**TINY, **overrides}), shape)
    assert isinstance(frontend, IRSFrontEnd)
    return frontend


def fit(
    ctx: JobContext,
    guides: list[nn.Module] | None = None,
    val: ImageData | None = None,
    data: ImageData | None = None,
    **overrides: Any,
) -> tuple[IRSFrontEnd, dict[str, float]]:
    params = IRSParams.model_validate({**TINY, **overrides})
    torch.manual_seed(1)
    frontend = build(**overrides)
    metrics = IRS().fit(frontend, guides or [guide()], data or images(96, 1), val, params, ctx)
    return frontend, metrics


def test_defaults_are_the_papers_and_it_declares_noise_after_imagenet_normalization() -> None:
    p = IRSParams()
    assert (p.sigma, p.ce_weight, p.lr, p.epochs, p.momentum, p.weight_decay) == (0.25, 0.1, 0.1, 20, 0, 0)
    assert tuple(p.mean) == IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert tuple(p.std) == IMAGENET_STD == (0.229, 0.224, 0.225)
    assert DEFENSES.get("irs") is IRS and IRS.trainable and IRS.needs_data
    assert IRS().epochs_at_full_scale(p) == 20
    frontend = IRS().build(IRSParams(scale=1), (3, 32, 32))
    assert isinstance(frontend, IRSFrontEnd) and isinstance(frontend.unet, BoundedUNet)
    assert frontend.smoothing == GaussianSmoothing(0.25, "normalized", IMAGENET_STD)
    assert not frontend.randomized, "the engine draws the noise; forward stays deterministic"
    assert set(frontend.state_dict()) == {f"unet.{k}" for k in frontend.unet.state_dict()}


def test_the_unet_sees_the_papers_noisy_normalized_image_and_returns_valid_pixels() -> None:
    """The engine draws σ·s_c per channel in pixels (ImageNet's s, not the classifier's CIFAR std); after
    the front-end's normalization that is (x - μ)/s + σ·ε, Algorithm 1's x' + δ, to float rounding."""
    frontend = build(sigma=0.5).eval()
    clf = Classifier(guide(), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert frontend.smoothing is not None
    noise = noise_for(frontend.smoothing, clf, 3)
    assert noise.pixel_sigmas == pytest.approx(tuple(0.5 * s for s in IMAGENET_STD))
    x = torch.rand(*SHAPE, generator=torch.Generator().manual_seed(0))
    noisy = noise.sample(x, 4, torch.Generator().manual_seed(1))
    eps = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(1))
    seen: list[torch.Tensor] = []
    frontend.unet.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    with torch.no_grad():
        out = frontend(noisy)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(seen[0], (x - mean) / std + 0.5 * eps, atol=1e-5, rtol=0)
    assert out.shape == noisy.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_the_loss_is_lambda_times_the_cross_entropy_plus_the_unscaled_mae() -> None:
    frontend, g = build().eval(), guide()
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0, 1])
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        terms, hits = loss_terms(frontend, g, x, noisy, y)
        out = frontend(noisy)
    assert float(terms[0]) == pytest.approx(float(F.cross_entropy(g(out), y)))
    assert float(terms[1]) == pytest.approx(float((out - x).abs().mean()))
    assert float(hits) == pytest.approx(float((g(out).argmax(1) == y).float().mean()))


def test_training_draws_sigma_on_the_normalized_image() -> None:
    """Black training images normalize to -μ/s, so what the U-Net sees minus that is the noise alone: its
    per-channel std is σ in normalized units (σ·s_c had it been drawn on the pixels before normalizing)."""
    black = images(96, 1)
    black = ImageData(torch.zeros_like(black.images), black.labels, "black", black.info)
    seen: list[torch.Tensor] = []
    params = IRSParams.model_validate({**TINY, "epochs": 1, "sigma": 0.8})
    frontend = build(sigma=0.8)
    frontend.unet.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach()))
    IRS().fit(frontend, [guide()], black, None, params, JobContext(seed=0))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    noise = torch.cat(seen) + mean / std
    assert noise.transpose(0, 1).flatten(1).std(1) == pytest.approx([0.8] * 3, rel=0.05)


def test_a_few_epochs_lower_eq_3s_loss() -> None:
    data, g = images(96, 1), guide()
    x, y = data.float_images()[:64], data.labels[:64]
    frontend = build()
    assert frontend.smoothing is not None
    scales = torch.tensor(frontend.smoothing.pixel_sigmas(None, 3)).view(1, 3, 1, 1)
    noisy = x + scales * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))

    def loss(fe: nn.Module) -> float:
        fe.train()  # batch statistics: a few steps leave BatchNorm's running ones far from converged
        with torch.no_grad():
            terms, _ = loss_terms(fe, g, x, noisy, y)
        return float(0.1 * terms[0] + terms[1])

    torch.manual_seed(1)
    before = loss(build())
    trained, metrics = fit(JobContext(seed=0), [g], epochs=12, momentum=0.9)
    assert loss(trained) < 0.9 * before
    assert metrics["final_epoch_mae"] > 0 and metrics["final_epoch_ce"] > 0
    assert 0 <= metrics["final_epoch_train_noisy_accuracy"] <= 1


def test_validation_numbers_are_reported_only_with_validation_images() -> None:
    _, without = fit(JobContext(seed=0), epochs=1)
    _, metrics = fit(JobContext(seed=0), val=images(20, 5), epochs=1)
    assert set(metrics) - set(without) == {"val_noisy_accuracy", "val_mae"}
    assert 0 <= metrics["val_noisy_accuracy"] <= 1 and metrics["val_mae"] > 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="1 channel"):
        IRS().build(IRSParams(scale=1, depth=2), (1, 28, 28))  # ImageNet's three values on grey images
    grey = IRS().build(IRSParams(scale=1, depth=2, mean=[0.5], std=[0.5]), (1, 28, 28))
    assert grey.smoothing == GaussianSmoothing(0.25, "normalized", (0.5,))
    with pytest.raises(ConfigError, match="28 -> 14 -> 7 -> 3"):
        IRS().check(IRSParams(mean=[0.5], std=[0.5]), (1, 28, 28), [])
    with pytest.raises(ValidationError, match="std.0"):
        IRSParams(std=[0.0, 0.2, 0.2])
    with pytest.raises(ValidationError, match="sigma"):
        IRSParams(sigma=0)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ConfigError, match="guide 2 of 2 cannot take"):
        IRS().check(IRSParams.model_validate(TINY), SHAPE, [guide(), wide])


def test_a_fit_killed_part_way_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    """Killed on the second step of the second epoch, with two guides drawn per batch."""
    settings: dict[str, Any] = {"epochs": 3, "momentum": 0.9}
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
