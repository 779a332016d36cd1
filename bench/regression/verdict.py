"""The gate's rule: which changes fail a check, and the exit code that says so.

A row compared with its reference row is of the same job, so of the same defense, classifier and attack
configs. A drop beyond chance in any accuracy fails. A *rise* beyond chance in robust accuracy fails too:
with nothing configured differently, the defense cannot have become stronger, so the likelier cause is an
attack that got weaker (fewer effective steps, a lost gradient, a broken loss), the failure this field most
often misses. Rises in clean, corrupted or certified accuracy, and changes in the abstention rate, are
reported but do not fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import pandas as pd

from bench.regression.matching import Matching, Pair, Row, match
from bench.regression.significance import Difference, corrected, difference


class ExitCode(IntEnum):
    """``bench check``'s exit codes, as the README documents them."""

    #: Every reference row has a counterpart of the same job and none changed beyond chance.
    OK = 0
    #: Some accuracy dropped, or some robust accuracy rose, beyond chance.
    REGRESSION = 1
    #: Bad input or usage: a missing, empty or foreign store, one with a newer schema, an unknown run.
    BAD_INPUT = 2
    #: The reference shares no row with the run, by job key or by labels.
    NO_OVERLAP = 3
    #: Nothing regressed, but some reference rows could not be compared: drifted or missing from the run.
    INCOMPLETE = 4


#: Accuracies whose drop beyond chance fails the check.
FAIL_ON_DROP = frozenset(
    {
        "clean_accuracy",
        "robust_accuracy",
        "cascade_robust_accuracy",
        "corrupted_accuracy",
        "certified_accuracy",
        "smoothed_clean_accuracy",
    }
)
#: Accuracies under attack, whose rise beyond chance fails too: with the same configs, a weaker attack.
FAIL_ON_RISE = frozenset({"robust_accuracy", "cascade_robust_accuracy"})


@dataclass(frozen=True)
class Cell:
    """One compared row: its reference, its difference, and whether that fails the check."""

    pair: Pair
    difference: Difference
    p_adjusted: float
    significant: bool

    @property
    def change(self) -> float:
        return float(self.pair.current["value"]) - float(self.pair.baseline["value"])

    @property
    def status(self) -> str:
        """``ok`` (no change beyond chance), ``regression`` (fails the check) or ``changed`` (beyond chance
        in a direction that does not fail, e.g. clean accuracy rose)."""
        if not self.significant or self.change == 0:
            return "ok"
        return "regression" if self.reason else "changed"

    @property
    def reason(self) -> str:
        """Why a significant change fails the check; empty when it does not."""
        metric = self.pair.current["metric"]
        if not self.significant:
            return ""
        if self.change < 0 and metric in FAIL_ON_DROP:
            return f"{metric} dropped beyond chance"
        if self.change > 0 and metric in FAIL_ON_RISE:
            return f"{metric} rose beyond chance with the same defense and classifier: a weaker attack?"
        return ""


@dataclass(frozen=True)
class Check:
    current: dict[str, Any]
    baseline: dict[str, Any]
    level: float
    correction: str
    cells: tuple[Cell, ...]
    matching: Matching

    @property
    def regressions(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.status == "regression")

    @property
    def exit_code(self) -> ExitCode:
        if not self.matching.overlap:
            return ExitCode.NO_OVERLAP
        if self.regressions:
            return ExitCode.REGRESSION
        if self.matching.drifted or self.matching.missing:
            return ExitCode.INCOMPLETE
        return ExitCode.OK


def check(
    current: pd.DataFrame, baseline: pd.DataFrame, level: float = 0.05, correction: str = "holm"
) -> Check:
    """Compare one run's rows with one reference run's rows (each a :func:`bench.results_table.read_rows`
    table of a single run)."""
    ours, theirs = _records(current), _records(baseline)
    matching = match(ours, theirs)
    differences = [difference(p.current, p.baseline) for p in matching.compared]
    significant, adjusted = corrected([d.p_value for d in differences], level, correction)
    cells = tuple(
        Cell(pair, d, p, s)
        for pair, d, p, s in zip(matching.compared, differences, adjusted, significant, strict=True)
    )
    return Check(_run(ours), _run(theirs), level, correction, cells, matching)


def _records(frame: pd.DataFrame) -> list[Row]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]


def _run(rows: Sequence[Row]) -> dict[str, Any]:
    """The run the rows came from, as a report names it."""
    first = rows[0] if rows else {}
    return {k: first.get(k) for k in ("run_id", "matrix", "git_commit", "run_status", "device")}
