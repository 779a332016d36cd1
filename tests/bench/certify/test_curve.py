from __future__ import annotations

import pytest

from bench.api import ConfigError
from bench.certify import ABSTAIN, Certificate, certified_accuracy
from bench.stats import clopper_pearson


def cert(prediction: int, radius_pixel: float) -> Certificate:
    return Certificate(prediction, 0, 0.5, 2 * radius_pixel, radius_pixel, 10)


# labels 0, 1, 2, 3, 4: right with pixel radius 0.3 and 0.8, wrong with 0.9, abstained, right with 0.0.
CERTS = [cert(0, 0.3), cert(1, 0.8), cert(0, 0.9), cert(ABSTAIN, 0.0), cert(4, 0.0)]
LABELS = [0, 1, 2, 3, 4]


def test_certified_accuracy_counts_right_answers_certified_at_least_r_in_pixel_space() -> None:
    rows = certified_accuracy(CERTS, LABELS, [0.0, 0.3, 0.5, 1.0])
    assert [r.radius for r in rows] == [0.0, 0.3, 0.5, 1.0]
    assert [r.certified.hits for r in rows] == [3, 2, 1, 0]
    assert all(r.certified.n == 5 for r in rows)
    assert (rows[1].certified.low, rows[1].certified.high) == clopper_pearson(2, 5)
    assert rows[1].certified.value == pytest.approx(0.4)


def test_abstentions_and_clean_accuracy_are_per_example_and_repeated_per_radius() -> None:
    rows = certified_accuracy(CERTS, LABELS, [0.0, 0.5])
    for row in rows:
        assert (row.abstained.hits, row.abstained.n) == (1, 5)
        # Clean accuracy is CERTIFY's class (its certified accuracy at radius 0) ...
        assert row.clean.hits == rows[0].certified.hits == 3
    # ... or PREDICT's answers when given, where an abstention is never right.
    rows = certified_accuracy(CERTS, LABELS, [0.5], predictions=[0, 1, 2, ABSTAIN, 0])
    assert rows[0].clean.hits == 3 and rows[0].certified.hits == 1


def test_bad_radii_and_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="radii"):
        certified_accuracy(CERTS, LABELS, [0.25, -0.5])
    with pytest.raises(ConfigError, match="5 certificates but 4 labels"):
        certified_accuracy(CERTS, LABELS[:4], [0.25])
    with pytest.raises(ConfigError, match="at least one"):
        certified_accuracy([], [], [0.25])
