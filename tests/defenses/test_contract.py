"""Every registered defense, built untrained with its default parameters, keeps what it declares.

Parametrized over the registry, so a defense is held to it the day it is registered: images of the shape it
is given come back finite and inside its declared ``output_range``; it is deterministic unless it declares
``randomized``, and then its private stream restarts on ``reseed``; and each part it declares
non-differentiable really switches under ``set_bpda`` (the harness's BPDA and its "no gradient attack
without BPDA" check both trust that declaration). A front-end that declares smoothing is fed noisy images
x + δ, outside [0,1], by the certification engine, and its declared range must hold on those too.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bench.api import DEFENSES, FrontEnd, set_bpda

pytestmark = pytest.mark.usefixtures("one_thread")

#: Parameters for defenses whose parameter model has a required field; every other defense is built with
#: ``Params()``, its defaults.
REQUIRED: dict[str, dict[str, Any]] = {}
#: Parameters a defense's defaults cannot take at one image shape: the U-Nets' four 2x2 pools need a side
#: divisible by 16, so on MNIST's 28x28 they are built two levels deep (28 -> 14 -> 7).
FOR_SHAPE: dict[tuple[str, tuple[int, int, int]], dict[str, Any]] = {
    ("robustifier", (1, 28, 28)): {"depth": 2},
    ("rtfe", (1, 28, 28)): {"depth": 2},
    ("jat", (1, 28, 28)): {"depth": 2},
    # ImageNet's three-channel statistics, irs's default normalization, do not fit grey images.
    ("irs", (1, 28, 28)): {"depth": 2, "mean": [0.5], "std": [0.5]},
}
#: MNIST's and CIFAR-10's image shapes.
SHAPES: list[tuple[int, int, int]] = [(1, 28, 28), (3, 32, 32)]
CASES = [(name, shape) for name in DEFENSES.names() for shape in SHAPES]
IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape in CASES]


def build(name: str, shape: tuple[int, int, int]) -> FrontEnd:
    """The front-end as the harness attacks it: untrained, in eval mode, its stream seeded."""
    cls = DEFENSES.get(name)
    defense = cls()
    values = {**REQUIRED.get(name, {}), **FOR_SHAPE.get((name, shape), {})}
    frontend = defense.build(cls.Params.model_validate(values), shape)
    frontend.eval()
    frontend.reseed(0)
    return frontend


def images(shape: tuple[int, int, int]) -> torch.Tensor:
    """Random images plus the box's corners (all black, all white), where a range is easiest to leave."""
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(2))
    return torch.cat([x, torch.zeros(1, *shape), torch.ones(1, *shape)])


def output_and_grad(frontend: FrontEnd, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output of a pass that tracks gradients (where BPDA acts), and the input gradient of its sum;
    None when autograd sees no path from x to the output."""
    frontend.reseed(0)
    x = x.clone().requires_grad_(True)
    out = frontend(x)
    if not out.requires_grad:
        return out.detach(), None
    (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return out.detach(), grad


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
def test_shape_kept_and_output_finite_in_the_declared_range(name: str, shape: tuple[int, int, int]) -> None:
    frontend = build(name, shape)
    x = images(shape)
    with torch.no_grad():
        out = frontend(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool(torch.isfinite(out).all())
    lo, hi = frontend.output_range
    assert lo <= float(out.min()) and float(out.max()) <= hi, (
        f"{name} output spans [{float(out.min())}, {float(out.max())}], outside its declared [{lo}, {hi}]"
    )


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
def test_a_smoothing_front_end_keeps_its_declared_range_on_noisy_inputs(
    name: str, shape: tuple[int, int, int]
) -> None:
    frontend = build(name, shape)
    if frontend.smoothing is None:
        pytest.skip(f"{name} declares no smoothing, so it is only ever fed images in [0,1]")
    # Noise of σ in pixel units; for normalized-space noise (σ·s_c in pixel space) a unit std stands in for
    # the classifier's, which the front-end alone does not know.
    x = images(shape)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    noisy = x + frontend.smoothing.sigma * noise
    with torch.no_grad():
        out = frontend(noisy)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    lo, hi = frontend.output_range
    assert lo <= float(out.min()) and float(out.max()) <= hi, (
        f"{name} maps noisy inputs to [{float(out.min())}, {float(out.max())}], outside its declared "
        f"[{lo}, {hi}]"
    )


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
def test_random_only_as_declared(name: str, shape: tuple[int, int, int]) -> None:
    frontend = build(name, shape)
    x = images(shape)

    def draw(seed: int) -> torch.Tensor:
        frontend.reseed(seed)
        with torch.no_grad():
            out: torch.Tensor = frontend(x)
        return out

    if not frontend.randomized:
        with torch.no_grad():
            assert torch.equal(frontend(x), frontend(x)), f"{name} is not declared randomized but varies"
        return
    assert torch.equal(draw(3), draw(3)), f"{name}: the same seed must give the same draws"
    assert not torch.equal(draw(3), draw(4)), f"{name} is declared randomized but ignores its seed"


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
def test_declared_non_differentiable_parts_switch_under_bpda(name: str, shape: tuple[int, int, int]) -> None:
    frontend = build(name, shape)
    x = images(shape)
    parts = set_bpda(frontend, True)
    value_on, on = output_and_grad(frontend, x)
    if parts == 0:
        assert on is not None and bool(torch.isfinite(on).all()), (
            f"{name} declares no non-differentiable part, so autograd must give it a finite gradient"
        )
        return
    assert set_bpda(frontend, False) == parts
    value_off, off = output_and_grad(frontend, x)
    # Equal up to float rounding: BPDA's value is x + (fn(x) - x), not fn(x) bit for bit.
    assert torch.allclose(value_on, value_off, rtol=0.0, atol=1e-6), (
        f"{name}: BPDA must change the gradient only, never the output"
    )
    assert on is not None and bool(torch.isfinite(on).all()) and bool((on != 0).any()), (
        f"{name}: with BPDA on, the surrogate's gradient must flow through the declared parts"
    )
    assert off is None or not torch.equal(on, off), (
        f"{name}: set_bpda(False) left the gradient as it was, so the declared parts do not switch"
    )
