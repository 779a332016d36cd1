"""Per-example certificates summed up per radius, as the papers tabulate them: certified accuracy at radius r
(right and certified at least r), the abstention rate and the smoothed classifier's clean accuracy, each with
n and an exact 95% Clopper-Pearson interval. Radii are ℓ2 distances in [0,1] pixel space."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.certify.smoothed import ABSTAIN, Certificate
from bench.errors import ConfigError
from bench.stats import clopper_pearson


@dataclass(frozen=True)
class Rate:
    hits: int
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, hits: int, n: int) -> Rate:
        low, high = clopper_pearson(hits, n)
        return cls(hits, n, low, high)

    @property
    def value(self) -> float:
        return self.hits / self.n


@dataclass(frozen=True)
class RadiusRow:
    #: ℓ2 radius in [0,1] pixel space.
    radius: float
    certified: Rate
    abstained: Rate
    clean: Rate


def check_radii(radii: Sequence[float]) -> None:
    bad = [r for r in radii if not (math.isfinite(r) and r >= 0)]
    if bad:
        raise ConfigError(f"radii to report must be finite and >= 0, got {bad}")


def certified_accuracy(
    certificates: Sequence[Certificate],
    labels: Sequence[int],
    radii: Sequence[float],
    predictions: Sequence[int] | None = None,
) -> list[RadiusRow]:
    """One row per radius. Clean accuracy counts PREDICT's answers when ``predictions`` are given, else
    CERTIFY's class (its certified accuracy at radius 0); an abstention is never right."""
    check_radii(radii)
    n = len(certificates)
    if n == 0:
        raise ConfigError("certified accuracy needs at least one certified example")
    if len(labels) != n or (predictions is not None and len(predictions) != n):
        raise ConfigError(f"{n} certificates but {len(labels)} labels and "
                          f"{'no' if predictions is None else len(predictions)} predictions")
    right = [c.prediction == y for c, y in zip(certificates, labels, strict=True)]
    answers = [c.prediction for c in certificates] if predictions is None else list(predictions)
    clean = Rate.of(sum(a == y and a != ABSTAIN for a, y in zip(answers, labels, strict=True)), n)
    abstained = Rate.of(sum(c.abstained for c in certificates), n)
    return [
        RadiusRow(
            float(r),
            Rate.of(sum(ok and c.radius_pixel >= r for ok, c in zip(right, certificates, strict=True)), n),
            abstained,
            clean,
        )
        for r in radii
    ]
