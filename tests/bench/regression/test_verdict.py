"""The gate's rule: a drop beyond chance fails, a robust-accuracy rise beyond chance fails, chance does not;
and the exit code that says which."""

from __future__ import annotations

import pandas as pd

from bench.regression.verdict import ExitCode, check
from bench.results_table import table
from tests.bench.regression.rows import row

N = 100
REF = "1" * 60 + "0" * 40


def run(*rows: dict[str, object]) -> pd.DataFrame:
    return table(rows)


def flip(outcomes: str, ones_to_zeros: int = 0, zeros_to_ones: int = 0) -> str:
    chars = list(outcomes)
    ones = [i for i, c in enumerate(chars) if c == "1"][:ones_to_zeros]
    zeros = [i for i, c in enumerate(chars) if c == "0"][:zeros_to_ones]
    for i in ones:
        chars[i] = "0"
    for i in zeros:
        chars[i] = "1"
    return "".join(chars)


def test_an_unchanged_run_passes() -> None:
    outcome = check(run(row(REF)), run(row(REF)))
    assert outcome.exit_code == ExitCode.OK
    assert [c.status for c in outcome.cells] == ["ok"]


def test_a_few_flips_either_way_are_chance() -> None:
    outcome = check(run(row(flip(REF, 3, 1))), run(row(REF)))
    assert outcome.exit_code == ExitCode.OK and outcome.cells[0].change < 0


def test_a_drop_beyond_chance_fails() -> None:
    clean = flip(REF, ones_to_zeros=20)
    outcome = check(run(row(clean, metric="clean_accuracy")), run(row(REF, metric="clean_accuracy")))
    assert outcome.exit_code == ExitCode.REGRESSION
    assert outcome.cells[0].reason == "clean_accuracy dropped beyond chance"


def test_a_robust_rise_beyond_chance_fails_as_a_weaker_attack() -> None:
    outcome = check(run(row(flip(REF, zeros_to_ones=20))), run(row(REF)))
    assert outcome.exit_code == ExitCode.REGRESSION
    assert "robust_accuracy rose beyond chance" in outcome.cells[0].reason
    assert "weaker attack" in outcome.cells[0].reason


def test_rises_that_no_attack_explains_are_reported_without_failing() -> None:
    rose = flip(REF, zeros_to_ones=20)
    for metric in ("clean_accuracy", "certified_accuracy", "abstain_rate"):
        outcome = check(run(row(rose, metric=metric)), run(row(REF, metric=metric)))
        assert outcome.exit_code == ExitCode.OK and outcome.cells[0].status == "changed", metric
    fell = flip(REF, ones_to_zeros=20)
    outcome = check(run(row(fell, metric="abstain_rate")), run(row(REF, metric="abstain_rate")))
    assert outcome.cells[0].status == "changed"


def test_the_correction_spreads_the_level_over_the_rows() -> None:
    """7 lost of 7 discordant is p = 1/64 alone, significant at 0.05; Holm over five rows needs p <= 0.01."""
    lost = flip(REF, ones_to_zeros=7)
    alone = check(run(row(lost)), run(row(REF)))
    assert alone.exit_code == ExitCode.REGRESSION
    others = [row(REF, attack=f"a{i}", job_key=f"k{i}") for i in range(4)]
    together = check(run(row(lost), *others), run(row(REF), *others))
    assert together.exit_code == ExitCode.OK
    pgd = next(c for c in together.cells if c.pair.current["attack"] == "pgd20")
    assert pgd.p_adjusted > 0.05 > pgd.difference.p_value
    assert check(run(row(lost), *others), run(row(REF), *others), level=0.1).exit_code == ExitCode.REGRESSION


def test_exit_codes_for_no_overlap_drift_and_missing_rows() -> None:
    other = row(REF, defense="bits", job_key="b")
    assert check(run(other), run(row(REF))).exit_code == ExitCode.NO_OVERLAP
    drifted = row(REF, job_key="new", n=50)
    assert check(run(drifted), run(row(REF))).exit_code == ExitCode.INCOMPLETE
    missing = check(run(row(REF)), run(row(REF), other))
    assert missing.exit_code == ExitCode.INCOMPLETE and len(missing.matching.missing) == 1
    new = check(run(row(REF), other), run(row(REF)))
    assert new.exit_code == ExitCode.OK and len(new.matching.new) == 1
    worse = row(flip(REF, 30), metric="clean_accuracy", job_key="c")
    both = check(run(worse, drifted), run(row(REF, metric="clean_accuracy", job_key="c"), row(REF)))
    assert both.exit_code == ExitCode.REGRESSION  # a regression outranks drift
