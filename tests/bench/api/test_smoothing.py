from __future__ import annotations

import math

import pytest
import torch

from bench.api import ConfigError, FrontEnd, GaussianSmoothing, Identity


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
