from __future__ import annotations

import pytest
from scipy.stats import beta

from bench.stats import binomial_p_value, clopper_pearson, lower_confidence_bound


def test_lower_bound_is_the_one_sided_clopper_pearson_quantile() -> None:
    # The (1 - alpha) one-sided bound is the alpha quantile of Beta(k, n - k + 1).
    for k, n, alpha in [(7, 10, 0.05), (9_500, 10_000, 0.001), (1, 3, 0.3)]:
        assert lower_confidence_bound(k, n, alpha) == pytest.approx(beta.ppf(alpha, k, n - k + 1), rel=1e-12)
    # ... which is the lower end of the two-sided interval at level 1 - 2 alpha.
    assert lower_confidence_bound(70, 100, 0.025) == pytest.approx(clopper_pearson(70, 100, 0.05)[0])


def test_lower_bound_edges_and_order() -> None:
    assert lower_confidence_bound(0, 50, 0.001) == 0.0
    assert lower_confidence_bound(50, 50, 0.001) == pytest.approx(0.001 ** (1 / 50))
    bounds = [lower_confidence_bound(60, 100, a) for a in (0.0001, 0.001, 0.01, 0.1, 0.5, 0.9)]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)


@pytest.mark.parametrize(("k", "n", "alpha"), [(-1, 10, 0.1), (11, 10, 0.1), (0, 0, 0.1), (5, 10, 0.0),
                                              (5, 10, 1.0)])
def test_lower_bound_refuses_impossible_input(k: int, n: int, alpha: float) -> None:
    with pytest.raises(ValueError):
        lower_confidence_bound(k, n, alpha)


def test_binomial_p_value_is_the_exact_two_sided_test() -> None:
    assert binomial_p_value(5, 10) == pytest.approx(1.0)
    assert binomial_p_value(10, 10) == pytest.approx(2 * 0.5**10)
    assert binomial_p_value(0, 10) == binomial_p_value(10, 10)
    assert binomial_p_value(60, 100) == pytest.approx(0.056887, abs=1e-6)
    with pytest.raises(ValueError):
        binomial_p_value(3, 2)
