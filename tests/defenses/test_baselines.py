"""The broken baselines: images in, images out, and only BPDA gives their declared parts a gradient."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from bench.api import DEFENSES, DatasetInfo, FrontEnd, ImageData, JobContext, set_bpda

pytestmark = pytest.mark.usefixtures("one_thread")


def build(kind: str, shape: tuple[int, int, int], **params: Any) -> FrontEnd:
    defense = DEFENSES.get(kind)()
    return defense.build(defense.Params.model_validate(params), shape)


def images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_bit_depth_rounds_to_its_levels(bits: int) -> None:
    x = images((5, 1, 28, 28))
    out = build("bit-depth", (1, 28, 28), bits=bits)(x)
    levels = 2**bits - 1
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out * levels, (out * levels).round(), atol=1e-5)
    assert (out - x).abs().max() <= 0.5 / levels + 1e-6
    assert len(out.unique()) <= levels + 1


def test_bit_depth_default_is_three_bits() -> None:
    assert DEFENSES.get("bit-depth").Params().bits == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_jpeg_keeps_shape_and_range(shape: tuple[int, int, int]) -> None:
    x = images((4, *shape))
    out = build("jpeg", shape)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x), "JPEG of noise is lossy"


def test_jpeg_preserves_smooth_images_and_quality_matters() -> None:
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).contiguous()
    assert (build("jpeg", (3, 32, 32), quality=95)(ramp) - ramp).abs().mean() < 0.02
    x = images((4, 1, 28, 28))
    low = (build("jpeg", (1, 28, 28), quality=10)(x) - x).abs().mean()
    high = (build("jpeg", (1, 28, 28), quality=95)(x) - x).abs().mean()
    assert low > high


@pytest.mark.parametrize(("kind", "params"), [("bit-depth", {"bits": 1}), ("bit-depth", {}), ("jpeg", {})])
def test_bpda_gives_gradients_where_autograd_gives_none(kind: str, params: dict[str, Any]) -> None:
    frontend = build(kind, (1, 28, 28), **params)
    x = images((3, 1, 28, 28)).requires_grad_(True)
    assert set_bpda(frontend, False) == 1
    (naive,) = torch.autograd.grad(frontend(x).sum(), x)
    assert float(naive.abs().sum()) == 0.0
    set_bpda(frontend, True)
    (bpda,) = torch.autograd.grad(frontend(x).sum(), x)
    assert torch.equal(bpda, torch.ones_like(x)), "BPDA's default surrogate is the identity"
    with torch.no_grad():
        set_bpda(frontend, False)
        exact = frontend(x)
    assert torch.equal(frontend(x).detach(), exact), "BPDA must not change the forward value"


def test_static_denoiser_trains_on_static_examples_only() -> None:
    defense = DEFENSES.get("static-denoiser")()
    assert defense.trainable and defense.needs_data
    params = defense.Params.model_validate({"epochs": 2, "width": 4, "attack_steps": 3, "eps": 0.2})
    shape = (1, 8, 8)
    frontend = defense.build(params, shape)
    torch.manual_seed(0)
    guide = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval().requires_grad_(False)
    x = images((96, *shape), seed=1)
    info = DatasetInfo("tiny", 3, shape, (0.5,), (0.5,), 96, 0)
    train = ImageData((x * 255).round().to(torch.uint8), guide(x).argmax(1), "tiny", info)
    before = [p.clone() for p in guide.parameters()]
    metrics = defense.fit(frontend, [guide], train, None, params, JobContext())
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters(), strict=True)), "guide changed"
    assert not frontend.training
    assert metrics["static_attack_success"] > 0.5, "the static examples must fool the undefended guide"
    assert {"train_wall_s", "static_attack_wall_s", "final_epoch_mse"} <= metrics.keys()
    with torch.no_grad():
        out = frontend(x[:4])
    assert out.shape == (4, *shape) and out.min() >= 0 and out.max() <= 1
    assert set_bpda(frontend, True) == 0, "the denoiser is differentiable end to end: nothing for BPDA"
