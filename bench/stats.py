"""Confidence intervals for accuracies: exact (Clopper-Pearson) 95% intervals, via statsmodels; and the two
binomial statistics of randomized-smoothing certification (Cohen et al. 2019), via statsmodels and scipy."""

from __future__ import annotations

from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

ALPHA = 0.05


def clopper_pearson(successes: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    if n <= 0:
        raise ValueError("an interval needs at least one example")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie in [0, n={n}]")
    low, high = proportion_confint(successes, n, alpha=alpha, method="beta")
    return float(low), float(high)


def lower_confidence_bound(successes: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion: CERTIFY's p̲A.

    The lower end of the two-sided interval at level 1 - 2·alpha leaves alpha in each tail, so it alone holds
    with probability at least 1 - alpha; this is how Cohen et al.'s reference code computes it.
    """
    _check_counts(successes, n)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must lie in (0, 1)")
    low, _ = proportion_confint(successes, n, alpha=2 * alpha, method="beta")
    return float(low)


def binomial_p_value(successes: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test of ``successes`` out of ``n`` against proportion ``p``: PREDICT abstains
    unless the top class beats the runner-up (nA of nA + nB draws against 1/2) at its level alpha."""
    _check_counts(successes, n)
    return float(binomtest(successes, n, p).pvalue)


def _check_counts(successes: int, n: int) -> None:
    if n <= 0:
        raise ValueError("a binomial statistic needs at least one draw")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie in [0, n={n}]")
