"""The no-denoiser smoothing baseline: an identity front-end that declares its noise, which the certification
engine then draws, so certifying it through a one-pixel threshold classifier gives Cohen et al.'s radius."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from scipy.stats import norm
from torch import nn

from bench.api import DEFENSES, Classifier, FrontEnd, GaussianSmoothing, Pipeline
from bench.certify.params import CertifyParams
from bench.certify.smoothed import smoothed_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def build(shape: tuple[int, int, int] = (1, 28, 28), **params: Any) -> FrontEnd:
    defense = DEFENSES.get("smoothing")()
    return defense.build(defense.Params.model_validate(params), shape)


def test_defaults_are_cohen_pixel_noise_at_a_quarter_and_nothing_is_trained() -> None:
    cls = DEFENSES.get("smoothing")
    assert build().smoothing == GaussianSmoothing(0.25, "pixel")
    assert not cls.trainable and not cls.needs_data


@pytest.mark.parametrize(("sigma", "space"), [(0.5, "pixel"), (1.0, "normalized")])
def test_forward_is_the_identity_on_noisy_inputs_and_the_noise_is_declared(sigma: float, space: str) -> None:
    frontend = build((3, 32, 32), sigma=sigma, space=space)
    assert frontend.smoothing == GaussianSmoothing(sigma, space)  # type: ignore[arg-type]
    assert not frontend.randomized, "the engine draws the noise; forward itself must stay deterministic"
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * sigma + 0.5
    assert float(x.min()) < 0 < 1 < float(x.max())
    x.requires_grad_(True)
    out = frontend(x)
    assert torch.equal(out, x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))
    assert frontend.output_range == (-math.inf, math.inf)


@pytest.mark.parametrize("sigma", [0.0, -0.25, math.inf, math.nan])
def test_sigma_must_be_a_finite_positive_number(sigma: float) -> None:
    with pytest.raises(ValidationError, match="sigma"):
        build(sigma=sigma)


@pytest.mark.parametrize("space", ["input", "Pixel", "logit"])
def test_the_noise_space_is_pixel_or_normalized(space: str) -> None:
    with pytest.raises(ValidationError, match="space"):
        build(space=space)


class OnePixelThreshold(nn.Module):
    """Class 1 when the first pixel exceeds 1/2: P(class 1 at x + δ) = Φ((x₀ - 1/2) / σ) in closed form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1)[:, 0] - 0.5
        return torch.stack([-score, score], dim=1)


def test_certifying_it_draws_the_declared_noise_into_the_classifier() -> None:
    """x₀ = 1 at σ = 1/4: P(class 1) = Φ(2), so the true radius is σ·Φ⁻¹(Φ(2)) = 1/2; CERTIFY's is its lower
    bound and, with n = 2000, within Monte-Carlo error of it."""
    sigma = 0.25
    pipeline = Pipeline(OnePixelThreshold(), build(sigma=sigma))
    smoothed = smoothed_pipeline(pipeline, num_classes=2, channels=1)
    x = torch.full((1, 28, 28), 0.0)
    x[0, 0, 0] = 1.0
    cert = smoothed.certify(x, CertifyParams(n0=100, n=2000), torch.Generator().manual_seed(0))
    assert cert.prediction == 1 and cert.radius == cert.radius_pixel
    assert 0.4 < cert.radius <= sigma * float(norm.ppf(norm.cdf(2.0)))
    assert 0.95 * 2000 < cert.count < 2000, "the noise reached the classifier at the declared σ"
    assert pipeline.n_forward > 0


def test_normalized_space_noise_is_scaled_by_the_classifier_std() -> None:
    classifier = Classifier(OnePixelThreshold(), (0.5,), (0.25,))
    pipeline = Pipeline(classifier, build(sigma=1.0, space="normalized"))
    smoothed = smoothed_pipeline(pipeline, num_classes=2, channels=1)
    assert smoothed.noise.pixel_sigmas == (0.25,)
