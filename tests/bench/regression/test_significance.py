"""The tests behind a check: McNemar's exact test on paired outcomes, else Fisher's, corrected across rows."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest, fisher_exact
from statsmodels.stats.multitest import multipletests

from bench.regression.significance import corrected, difference, paired
from tests.bench.regression.rows import row

BASE = "1" * 30 + "0" * 10


def test_paired_outcomes_get_mcnemars_exact_test_on_the_discordant_examples() -> None:
    now = "0" * 8 + "1" * 22 + "1" * 2 + "0" * 8  # 8 lost, 2 gained
    d = difference(row(now), row(BASE))
    assert (d.test, d.lost, d.gained) == ("mcnemar", 8, 2)
    # McNemar's exact test is the two-sided binomial test of the discordant split against 1/2.
    assert d.p_value == pytest.approx(binomtest(2, 10, 0.5).pvalue)


def test_a_reproduced_run_has_p_one_and_one_flip_each_way_is_chance() -> None:
    assert difference(row(BASE), row(BASE)).p_value == 1.0
    flipped = "0" + BASE[1:30] + "1" + BASE[31:]
    assert difference(row(flipped), row(BASE)).p_value == 1.0


def test_other_examples_or_no_outcomes_get_fishers_exact_test() -> None:
    other = row(BASE[:20], examples_sha256="f" * 64)
    assert not paired(other, row(BASE))
    d = difference(other, row(BASE))
    assert d.test == "fisher" and d.lost is None
    assert d.p_value == pytest.approx(fisher_exact([[20, 0], [30, 10]]).pvalue)
    assert difference(row(BASE, outcomes=""), row(BASE)).test == "fisher"


def test_the_correction_is_statsmodels_multipletests() -> None:
    ps = [0.001, 0.02, 0.03, 0.5]
    reject, adjusted = corrected(ps, 0.05, "holm")
    expected = multipletests(ps, alpha=0.05, method="holm")
    assert reject == list(expected[0]) == [True, False, False, False]
    assert adjusted == pytest.approx(list(expected[1]))
    assert corrected([], 0.05, "holm") == ([], [])
