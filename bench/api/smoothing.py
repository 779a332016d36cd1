"""The randomized-smoothing declaration a defense makes, and what its certificates mean in pixel space.

A front-end that sets :attr:`~bench.api.frontend.FrontEnd.smoothing` turns its pipeline f∘D into the smoothed
classifier g(x) = argmax_c P(f(D(x+δ)) = c), δ ~ N(0, σ²I) in the declared space (Cohen et al. 2019). The
front-end's ``forward`` stays deterministic: the certification engine draws δ from its own seeded generator,
so a certificate is reproducible and attack code cannot steer the noise.

Two spaces exist because the papers disagree on where the noise goes. ``pixel`` adds it to the [0,1] image
(Cohen, Salman et al.); ``normalized`` adds it after a per-channel normalization (x - mean) / std (IRS-Net).
That normalization is the classifier's unless the declaration carries its own ``std``: a front-end that
normalizes its input itself (IRS-Net normalizes with ImageNet's statistics whatever the classifier uses) names
the std it divides by, and only that std decides the noise's size in pixels. Every radius the harness stores
or prints is an ℓ2 distance in [0,1] pixel space, so a normalized-space certificate is converted with
:meth:`GaussianSmoothing.pixel_radius`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal, get_args

from bench.errors import ConfigError

NoiseSpace = Literal["pixel", "normalized"]
NOISE_SPACES: tuple[str, ...] = get_args(NoiseSpace)


@dataclass(frozen=True)
class GaussianSmoothing:
    """Isotropic Gaussian noise of standard deviation ``sigma`` in ``space``."""

    sigma: float
    space: NoiseSpace = "pixel"
    #: The per-channel std of the normalization the noise is added after, when the front-end normalizes with
    #: its own statistics (one value serves every channel); None: the classifier's normalization. Only for
    #: ``normalized`` space. The certify job's config and rows record it only when set, so a declaration
    #: without it keys and reads exactly as before the field existed.
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, Real):
            raise ConfigError(f"smoothing sigma must be a number, got {self.sigma!r}")
        object.__setattr__(self, "sigma", float(self.sigma))  # a numpy scalar declares the same smoothing
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"smoothing sigma must be a finite number > 0, got {self.sigma!r}")
        if self.space not in NOISE_SPACES:
            raise ConfigError(
                f"unknown smoothing noise space {self.space!r} (valid: {', '.join(NOISE_SPACES)})"
            )
        if self.std is not None:
            if self.space != "normalized":
                raise ConfigError(
                    f"a smoothing std {list(self.std)} scales normalized-space noise, but the noise is "
                    f"declared in {self.space!r} space; declare space 'normalized' or drop the std"
                )
            values = tuple(_as_float(s) for s in self.std)
            if not values or not all(math.isfinite(s) and s > 0 for s in values):
                raise ConfigError(
                    f"a smoothing std must be finite and > 0 in every channel, got {list(self.std)}"
                )
            object.__setattr__(self, "std", values)

    def normalization_std(self, std: Sequence[float] | None) -> tuple[float, ...] | None:
        """The std the noise is scaled by in pixels: the declared one, else the classifier's ``std``."""
        if self.std is not None:
            return self.std
        return None if std is None else tuple(float(s) for s in std)

    def pixel_sigmas(self, std: Sequence[float] | None, channels: int) -> tuple[float, ...]:
        """Per-channel standard deviation of the same noise seen in [0,1] pixel space.

        Noise σ·ε added to the normalized image (x - m_c) / s_c and mapped back is x + σ·s_c·ε: per-channel
        pixel noise σ·s_c, and the mean cancels. ``std`` is the classifier's per-channel normalization (one
        value is shared by every channel), used where the declaration carries no std of its own; it is needed
        only in ``normalized`` space, where it is an error to lack both, since the noise would otherwise be of
        an unknown size.
        """
        if self.space == "pixel":
            return (float(self.sigma),) * channels
        scales = _checked_std(self.normalization_std(std), channels)
        return tuple(float(self.sigma) * s for s in scales)

    def pixel_radius(self, radius: float, std: Sequence[float] | None, channels: int) -> float:
        """An ℓ2 certificate ``radius`` of the declared space as an ℓ2 radius in [0,1] pixel space.

        A pixel perturbation δ becomes δ_c / s_c after normalization, so ‖δ_norm‖ ≤ ‖δ‖ / min_c s_c: every
        pixel perturbation shorter than R·min_c s_c stays inside the normalized-space ball of radius R. That
        ball is an ellipsoid in pixel space and this the largest pixel ball inside it: exact for equal stds,
        conservative (never larger than what the certificate covers) otherwise.
        """
        if radius < 0:
            raise ConfigError(f"a certified radius is never negative, got {radius!r}")
        if self.space == "pixel":
            return float(radius)
        return float(radius) * min(_checked_std(self.normalization_std(std), channels))


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"a smoothing std holds numbers, got {value!r}")
    return float(value)


def _checked_std(std: Sequence[float] | None, channels: int) -> tuple[float, ...]:
    if std is None:
        raise ConfigError(
            "normalized-space smoothing needs the classifier's normalization (per-channel std), and this "
            "classifier has none known; declare pixel-space noise, declare the std the front-end normalizes "
            "with (GaussianSmoothing.std), or wrap the network in a Classifier"
        )
    values = tuple(float(s) for s in std)
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ConfigError(f"normalization std {list(values)} does not fit images with {channels} channels")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"normalization std must be finite and > 0 in every channel, got {list(values)}")
    return values
