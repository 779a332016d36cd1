"""The shared U-Net: the Robustifier paper's parameter counts, both upsampling modes and their outputs, and
the refusal of a depth the input size cannot halve."""

from __future__ import annotations

import pytest
import torch

from bench.api import ConfigError
from defenses.unet import BoundedUNet, UNet, Up, build_unet, depth_problem

pytestmark = pytest.mark.usefixtures("one_thread")

CIFAR = (3, 32, 32)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "scale, paper_millions, ours_millions", [(4, 4.3, 4.318), (8, 17.3, 17.263), (16, 69.0, 69.031)]
)
def test_parameter_counts_match_the_robustifier_paper(
    scale: int, paper_millions: float, ours_millions: float
) -> None:
    """Norouzzadeh et al. (Sec. S.1) report 4.3M / 17.3M / 69.0M parameters for S = 4 / 8 / 16 on CIFAR-10;
    ours are 4.318M / 17.263M / 69.031M, within 0.5% of each (and within their rounding for S = 8 and 16)."""
    with torch.device("meta"):  # shapes only: S = 16 would allocate 276 MB of weights
        model = build_unet(CIFAR, scale, 4, "bilinear", sigmoid=False)
    count = parameters(model) / 1e6
    assert count == pytest.approx(ours_millions, abs=1e-3)
    assert count == pytest.approx(paper_millions, rel=0.02)


def test_the_count_grows_as_the_square_of_the_scale() -> None:
    with torch.device("meta"):
        small, large = (parameters(build_unet(CIFAR, s, 4, "nearest", sigmoid=True)) for s in (2, 4))
    assert large / small == pytest.approx(4, rel=0.01)


@pytest.mark.parametrize("up", ["bilinear", "nearest"])
@pytest.mark.parametrize("shape, depth", [((3, 32, 32), 4), ((1, 28, 28), 2), ((3, 16, 24), 3)])
def test_images_come_back_in_their_shape(up: str, shape: tuple[int, int, int], depth: int) -> None:
    torch.manual_seed(0)
    model = build_unet(shape, 1, depth, up, sigmoid=up == "nearest").eval()  # type: ignore[arg-type]
    x = torch.rand(2, *shape)
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_the_sigmoid_variant_keeps_pixels_valid_and_says_so() -> None:
    torch.manual_seed(0)
    bounded = build_unet(CIFAR, 1, 2, "nearest", sigmoid=True)
    open_ = build_unet(CIFAR, 1, 2, "bilinear", sigmoid=False)
    assert isinstance(bounded, BoundedUNet) and bounded.output_range == (0.0, 1.0)
    assert type(open_) is UNet and open_.output_range == (-float("inf"), float("inf"))
    with torch.no_grad():
        out = bounded(torch.rand(4, *CIFAR) * 50 - 25)  # far outside the box: the sigmoid still bounds it
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_nearest_mode_upsamples_with_resize_convolutions_and_bilinear_without_weights() -> None:
    nearest = [m for m in build_unet(CIFAR, 1, 3, "nearest", sigmoid=True).modules() if isinstance(m, Up)]
    bilinear = [m for m in build_unet(CIFAR, 1, 3, "bilinear", sigmoid=False).modules() if isinstance(m, Up)]
    assert len(nearest) == len(bilinear) == 3
    assert all(isinstance(m.resize_conv, torch.nn.Conv2d) for m in nearest)
    assert all(m.resize_conv is None for m in bilinear)


def test_every_level_reaches_the_output() -> None:
    """The bottleneck reaches the output past the skip connections: zeroing the deepest level's weights
    changes it. In train mode, as trained: before BatchNorm has statistics, eval mode leaves the default
    initialization's shrinking activations unnormalized and the deep path all but vanishes."""
    torch.manual_seed(0)
    model = build_unet(CIFAR, 1, 3, "bilinear", sigmoid=False).train()
    x = torch.rand(2, *CIFAR)
    with torch.no_grad():
        base = model(x)
        for p in model.downs[-1].parameters():
            p.zero_()
        assert (model(x) - base).abs().max() > 1e-2


@pytest.mark.parametrize("shape, depth", [((1, 28, 28), 3), ((1, 28, 28), 4), ((3, 32, 32), 6)])
def test_a_depth_the_input_cannot_halve_is_refused_with_the_sizes(
    shape: tuple[int, int, int], depth: int
) -> None:
    with pytest.raises(ConfigError) as err:
        build_unet(shape, 1, depth, "bilinear", sigmoid=False)
    message = str(err.value)
    side = shape[1]
    assert f"depth {depth}" in message and str(shape) in message
    assert " -> ".join(str(side // 2**i) for i in range(depth + 1)) in message  # e.g. 28 -> 14 -> 7 -> 3
    assert depth_problem(shape, depth) == message


def test_depths_the_input_can_halve_pass() -> None:
    assert depth_problem((1, 28, 28), 2) is None
    assert depth_problem((3, 32, 32), 5) is None
    assert "at most 2" in (depth_problem((1, 28, 28), 3) or "")
