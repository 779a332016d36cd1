"""What one CERTIFY run is asked for: Cohen et al.'s n0, n and α, the noise batch, and the papers' presets.

The noise batch is part of the parameters, not an execution detail: it decides how the draws are split among
calls to the generator, and so which draws a seed gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from bench.errors import ConfigError

#: Noise samples classified per forward pass unless a run says otherwise.
DEFAULT_NOISE_BATCH = 1000


@dataclass(frozen=True)
class CertifyParams:
    """``n0`` selection draws, ``n`` estimation draws, failure probability ``alpha`` (Cohen et al. 2019)."""

    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    noise_batch: int = DEFAULT_NOISE_BATCH

    def __post_init__(self) -> None:
        for name in ("n0", "n", "noise_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"certify {name} must be a whole number >= 1, got {value!r}")
        if self.n0 > self.n:
            raise ConfigError(
                f"certify n0={self.n0} exceeds n={self.n}: the selection draws only guess the top class and "
                "the estimation draws must be the larger sample"
            )
        check_alpha(self.alpha)
        object.__setattr__(self, "alpha", float(self.alpha))  # plain data, whatever number type came in

    @property
    def forward_passes(self) -> int:
        """Pipeline evaluations one CERTIFY costs: one per noise draw, and nothing else."""
        return self.n0 + self.n


def check_alpha(alpha: float) -> None:
    number = isinstance(alpha, Real) and not isinstance(alpha, bool)
    if not (number and math.isfinite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"certify alpha is a failure probability and must lie in (0, 1), got {alpha!r}")


@dataclass(frozen=True)
class CertifyPreset:
    """A paper's protocol: its parameters and which test images it certifies (every ``every``-th from the
    first, at most ``count``), so a reproduction names the preset instead of restating it."""

    params: CertifyParams
    every: int
    count: int | None
    source: str

    def __post_init__(self) -> None:
        if self.every < 1 or (self.count is not None and self.count < 1):
            raise ConfigError(
                f"a certify preset takes every >= 1 and count >= 1, got {self.every} and {self.count}"
            )

    def image_indices(self, n_test: int) -> list[int]:
        return list(range(0, n_test, self.every))[: self.count]


PRESETS: dict[str, CertifyPreset] = {
    "salman": CertifyPreset(
        CertifyParams(n0=100, n=10_000, alpha=0.001),
        every=20,
        count=500,
        source="Salman et al. 2020, denoised smoothing: 500 CIFAR-10 test images (every 20th), n = 10,000",
    ),
}
