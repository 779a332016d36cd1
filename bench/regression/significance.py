"""Is the difference between two rows of one job more than chance? Exact tests, corrected across rows.

Where both rows stored their per-example outcomes on the same examples (same ``examples_sha256``), the test
is McNemar's exact test on the discordant examples: pairing removes the between-example variance, so a
handful of examples flipping one way is already evidence, and a rerun that reproduces every outcome gives
p = 1. Otherwise the rows are two independent proportions, compared with Fisher's exact test. Both are
two-sided; the direction is read from the values. Across all rows of a check the p-values are corrected for
multiple comparisons (Holm by default, via statsmodels), so a check of many rows does not fail by chance at
a higher rate than its level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from scipy.stats import fisher_exact
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from bench.regression.matching import Row


@dataclass(frozen=True)
class Difference:
    test: Literal["mcnemar", "fisher"]
    p_value: float
    #: For McNemar: examples right in the reference and wrong now (lost), and the reverse (gained).
    lost: int | None = None
    gained: int | None = None


def paired(current: Row, baseline: Row) -> bool:
    """Both rows hold per-example outcomes for the same examples, in the same order."""
    ours, theirs = current["outcomes"], baseline["outcomes"]
    return bool(
        ours
        and theirs
        and len(ours) == len(theirs)
        and current["examples_sha256"] == baseline["examples_sha256"]
    )


def difference(current: Row, baseline: Row) -> Difference:
    if paired(current, baseline):
        pairs = list(zip(baseline["outcomes"], current["outcomes"], strict=True))
        table = [
            [pairs.count(("1", "1")), pairs.count(("1", "0"))],
            [pairs.count(("0", "1")), pairs.count(("0", "0"))],
        ]
        p = float(mcnemar(table, exact=True).pvalue)
        return Difference("mcnemar", p, lost=table[0][1], gained=table[1][0])
    k1, n1, k0, n0 = current["successes"], current["n"], baseline["successes"], baseline["n"]
    return Difference("fisher", float(fisher_exact([[k1, n1 - k1], [k0, n0 - k0]]).pvalue))


def corrected(p_values: Sequence[float], level: float, method: str) -> tuple[list[bool], list[float]]:
    """Which differences are significant at ``level`` after the correction, and the adjusted p-values."""
    if not p_values:
        return [], []
    reject, adjusted, _, _ = multipletests(list(p_values), alpha=level, method=method)
    return [bool(r) for r in reject], [float(p) for p in adjusted]
