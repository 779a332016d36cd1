from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from bench.api import Classifier, ConfigError, FrontEnd, GaussianSmoothing, Identity, Pipeline
from bench.certify import CertifyParams, smoothed_pipeline


@pytest.mark.parametrize("sigma", [0.0, -0.25, math.inf, math.nan, True, "0.5"])
def test_sigma_must_be_a_positive_finite_number(sigma: object) -> None:
    with pytest.raises(ConfigError, match="sigma"):
        GaussianSmoothing(sigma, "pixel")  # type: ignore[arg-type]


def test_unknown_noise_space_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"'logit'.*pixel, normalized"):
        GaussianSmoothing(0.25, "logit")  # type: ignore[arg-type]


def test_pixel_noise_is_the_same_in_every_channel_and_needs_no_normalization() -> None:
    s = GaussianSmoothing(0.5)
    assert s.pixel_sigmas(None, 3) == (0.5, 0.5, 0.5)
    assert s.pixel_radius(0.7, None, 3) == 0.7


def test_normalized_noise_is_sigma_times_std_per_channel_in_pixel_space() -> None:
    s = GaussianSmoothing(0.5, "normalized")
    assert s.pixel_sigmas([0.2, 0.25, 0.4], 3) == pytest.approx((0.1, 0.125, 0.2))
    assert s.pixel_sigmas([0.3081], 1) == pytest.approx((0.5 * 0.3081,))
    # One std serves every channel, as a grey normalization does on colour images.
    assert s.pixel_sigmas([0.5], 3) == pytest.approx((0.25, 0.25, 0.25))


def test_a_normalized_certificate_shrinks_by_the_smallest_std() -> None:
    s = GaussianSmoothing(0.5, "normalized")
    assert s.pixel_radius(1.0, [0.229, 0.224, 0.225], 3) == pytest.approx(0.224)
    with pytest.raises(ConfigError, match="never negative"):
        s.pixel_radius(-0.1, [0.2], 1)


def test_normalized_noise_without_a_known_normalization_is_an_error() -> None:
    s = GaussianSmoothing(0.25, "normalized")
    with pytest.raises(ConfigError, match="normalization"):
        s.pixel_sigmas(None, 3)
    with pytest.raises(ConfigError, match="normalization"):
        s.pixel_radius(0.5, None, 3)
    with pytest.raises(ConfigError, match="3 channels"):
        s.pixel_sigmas([0.2, 0.3], 3)


def test_a_front_end_declares_no_smoothing_unless_it_sets_one() -> None:
    plain, smoothed = Identity(), Identity()
    smoothed.smoothing = GaussianSmoothing(0.25)
    assert plain.smoothing is None and FrontEnd.smoothing is None
    assert smoothed.smoothing == GaussianSmoothing(0.25, "pixel")
    # Declaring it leaves forward deterministic: the engine, not the front-end, draws the noise.
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(smoothed(x), x)


# -- a front-end that normalizes with its own statistics declares them ---------------------------------------
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def test_a_declared_std_scales_the_noise_whatever_the_classifier_normalizes_with() -> None:
    s = GaussianSmoothing(0.25, "normalized", IMAGENET_STD)
    expected = tuple(0.25 * v for v in IMAGENET_STD)
    assert s.pixel_sigmas(None, 3) == pytest.approx(expected)
    assert s.pixel_sigmas(CIFAR_STD, 3) == pytest.approx(expected), "the classifier's std must not be used"
    assert s.pixel_radius(1.0, CIFAR_STD, 3) == pytest.approx(0.224)
    assert s.normalization_std(CIFAR_STD) == IMAGENET_STD
    # Without a declared std the classifier's normalization is used, as before the field existed.
    assert GaussianSmoothing(0.25, "normalized").normalization_std(CIFAR_STD) == CIFAR_STD
    with pytest.raises(ConfigError, match="3 channels"):
        GaussianSmoothing(0.25, "normalized", (0.2, 0.3)).pixel_sigmas(None, 3)


def test_a_declared_std_is_plain_floats_positive_and_only_for_normalized_noise() -> None:
    as_list = GaussianSmoothing(0.5, "normalized", [0.5])  # type: ignore[arg-type]
    assert as_list == GaussianSmoothing(0.5, "normalized", (0.5,))
    assert GaussianSmoothing(0.5, "normalized", (0.5,)).std == (0.5,)
    with pytest.raises(ConfigError, match="'pixel' space"):
        GaussianSmoothing(0.5, "pixel", (0.5,))
    for bad in [(), (0.2, 0.0), (math.nan,), (math.inf,), (True,), ("0.2",)]:
        with pytest.raises(ConfigError, match="std"):
            GaussianSmoothing(0.5, "normalized", bad)  # type: ignore[arg-type]


class DeclaresOwnStd(FrontEnd):
    """The identity, declaring normalized-space noise scaled by its own (ImageNet) std, as IRS-Net does."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.smoothing = GaussianSmoothing(sigma, "normalized", IMAGENET_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2)


class PixelThreshold(nn.Module):
    """Class 1 where pixel (c, 0, 0) exceeds 1/2, read from the classifier's normalized input."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = self.channel
        score = z[:, c, 0, 0] - (0.5 - CIFAR_MEAN[c]) / CIFAR_STD[c]
        return torch.stack([-score, score], 1)


def test_a_constant_pipeline_is_certified_at_its_known_bound_in_both_spaces() -> None:
    """Every draw votes class 0, so p̲A is α^(1/n) exactly (Clopper-Pearson with all n successes) and the
    certificate σ·Φ⁻¹(α^(1/n)) in normalized units is 0.224 times that in pixels (ImageNet's smallest std),
    not the classifier's 0.1994."""
    sigma, params = 0.5, CertifyParams(n0=10, n=1000, alpha=0.001, noise_batch=500)
    clf = Classifier(Constant(), CIFAR_MEAN, CIFAR_STD)
    g = smoothed_pipeline(Pipeline(clf, DeclaresOwnStd(sigma)), 2, 3)
    cert = g.certify(torch.rand(3, 2, 2), params, torch.Generator().manual_seed(0))
    radius = sigma * float(norm.ppf(0.001 ** (1 / 1000)))
    assert (cert.prediction, cert.count) == (0, 1000)
    assert cert.p_lower == pytest.approx(0.001 ** (1 / 1000), rel=1e-9)
    assert cert.radius == pytest.approx(radius, rel=1e-9)
    assert cert.radius_pixel == pytest.approx(0.224 * radius, rel=1e-9)


@pytest.mark.parametrize("channel", [0, 1])
def test_a_threshold_pipeline_is_certified_up_to_its_known_distance_in_both_spaces(channel: int) -> None:
    """A threshold on one pixel at 1/2, the pixel at 0.6: pixel noise there is σ·s_c, so pA = Φ(0.1/(σ·s_c))
    and the true radius is 0.1/s_c in normalized units, 0.1 in pixels along that pixel. CERTIFY's bounds come
    within Monte-Carlo error of the normalized one; converted by min_c s_c = 0.224 the pixel radius is exact
    for the channel of the smallest std (1) and conservative by s_c / 0.224 for another (0)."""
    sigma = 0.25
    clf = Classifier(PixelThreshold(channel), CIFAR_MEAN, CIFAR_STD)
    g = smoothed_pipeline(Pipeline(clf, DeclaresOwnStd(sigma)), 2, 3)
    x = torch.full((3, 2, 2), 0.2)
    x[channel, 0, 0] = 0.6
    cert = g.certify(x, CertifyParams(n0=100, n=20_000, noise_batch=5000), torch.Generator().manual_seed(3))
    s_c = IMAGENET_STD[channel]
    assert cert.prediction == 1
    assert 0.95 * 0.1 / s_c < cert.radius <= 0.1 / s_c
    assert cert.radius_pixel == pytest.approx(cert.radius * 0.224)
    true_pixel = 0.1 * 0.224 / s_c  # the largest pixel ball inside the normalized-space certificate
    assert 0.95 * true_pixel < cert.radius_pixel <= true_pixel <= 0.1
