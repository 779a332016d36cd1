"""Randomized smoothing with no denoiser (Cohen et al. 2019): Gaussian noise straight into the frozen
classifier.

It is the "no denoiser" row of Salman et al. (2020)'s Table 2, the baseline denoised smoothing improves on,
and, on a classifier trained with Gaussian noise (a recipe's ``noise_sigma``), Cohen et al.'s own method. The
front-end only declares the noise: the certification engine draws it from its own seeded generator and adds
it to the input, so ``forward`` is the identity and stays deterministic (:mod:`bench.api.smoothing`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import Field

from bench.api import (
    Defense,
    DefenseParams,
    FrontEnd,
    GaussianSmoothing,
    NoiseSpace,
    register_defense,
)


class GaussianNoiseFrontEnd(FrontEnd):
    """The identity on the noisy input x + δ the engine feeds it, declaring the noise δ is drawn from."""

    #: The input is x + δ, outside [0,1] and unbounded, and passes through unchanged to the classifier.
    output_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    def __init__(self, smoothing: GaussianSmoothing) -> None:
        super().__init__()
        self.smoothing = smoothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SmoothingParams(DefenseParams):
    #: Noise standard deviation, in the units of ``space``; Cohen et al. and Salman et al. use 0.12 to 1.0.
    sigma: float = Field(0.25, gt=0, allow_inf_nan=False)
    #: ``pixel``: noise on the [0,1] image (Cohen, Salman); ``normalized``: after the classifier's mean/std.
    space: NoiseSpace = "pixel"


@register_defense("smoothing")
class Smoothing(Defense):
    """Gaussian noise of σ in front of the frozen classifier, no denoiser (Cohen et al. 2019); certify it."""

    Params = SmoothingParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return GaussianNoiseFrontEnd(GaussianSmoothing(params.sigma, params.space))
