"""Draws of x + δ for a declared smoothing, from a generator the caller seeds.

Normalized-space noise is drawn as per-channel pixel noise σ·s_c added to x, not by normalizing x, adding σ
and mapping back: ((x - m)/s + σ·ε)·s + m = x + σ·s·ε, so both are the same distribution for the same ε, and
the direct form is one multiply-add on the draw (no round trip through the mean, which would only add
rounding) and keeps the pipeline's input in pixel space, where the front-end and classifier expect it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.api import Classifier, ConfigError, GaussianSmoothing


class GaussianNoise:
    """The noise of ``smoothing`` on images with ``channels`` channels; ``std`` is the classifier's
    per-channel normalization, required for ``normalized`` space unless the declaration carries its own."""

    def __init__(
        self, smoothing: GaussianSmoothing, channels: int, std: Sequence[float] | None = None
    ) -> None:
        self.smoothing = smoothing
        self.channels = channels
        #: The std normalized-space noise is scaled by in pixels: the declared one wins over the classifier's,
        #: since the front-end that declares it normalizes with it.
        self.std = smoothing.normalization_std(std)
        self.pixel_sigmas = smoothing.pixel_sigmas(self.std, channels)

    @property
    def sigma(self) -> float:
        return self.smoothing.sigma

    def pixel_radius(self, radius: float) -> float:
        return self.smoothing.pixel_radius(radius, self.std, self.channels)

    def sample(self, x: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` noisy copies of one image ``x`` (C, H, W), in pixel space: shape (count, C, H, W)."""
        if x.dim() != 3 or x.shape[0] != self.channels:
            raise ConfigError(
                f"the noise was set up for images of {self.channels} channel(s), shape (C, H, W), but got an "
                f"input of shape {tuple(x.shape)}"
            )
        draws = torch.randn((count, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        if len(set(self.pixel_sigmas)) == 1:
            draws.mul_(self.pixel_sigmas[0])
        else:
            draws.mul_(torch.tensor(self.pixel_sigmas, device=x.device, dtype=x.dtype).view(-1, 1, 1))
        return draws.add_(x)


def noise_for(smoothing: GaussianSmoothing, classifier: nn.Module, channels: int) -> GaussianNoise:
    """The noise for ``classifier``: its normalization is known when it is a :class:`Classifier` (the harness
    wraps every network in one), and only normalized-space noise that declares no std of its own needs it."""
    std = classifier.std.flatten().tolist() if isinstance(classifier, Classifier) else None
    return GaussianNoise(smoothing, channels, std)
