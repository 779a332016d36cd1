"""The CI gate bites: ``bench check`` on real rows of ``examples/ci-gate.yaml`` fails a run whose PGD was cut
to one step (robust accuracy rose) and a run whose AAA did not learn (accuracy dropped), and passes the
committed quick reference against its own export.

The broken runs are stored exports (``tests/data/ci-gate``), made with the committed reference by
``python -m tests.bench.regression.gate_fixtures``, so these tests take seconds, not the minutes the runs do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bench.cli import main
from tests.bench.regression.gate_fixtures import BROKEN_AAA, REFERENCE, WEAK_PGD

REPO = Path(__file__).resolve().parents[3]
STALE = "fixtures and reference differ in job keys: run `python -m tests.bench.regression.gate_fixtures`"


def check(run: Path, baseline: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    args = ["check", "--db", str(run), "--baseline", str(baseline), "--json", *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, json.loads(result.output)


def failures(report: dict[str, Any]) -> set[tuple[str, float, str, str]]:
    return {
        (c["defense"], c["eps"], c["metric"], "rose" if c["change"] > 0 else "dropped")
        for c in report["compared"]
        if c["status"] == "regression"
    }


def test_one_step_pgd_fails_the_gate_on_the_rise() -> None:
    code, report = check(WEAK_PGD, REFERENCE)
    assert not report["drift"] and not report["missing"], STALE
    assert code == 1 and report["result"] == "regression"
    found = failures(report)
    assert ("aaa", 0.3, "robust_accuracy", "rose") in found
    assert {change for *_, change in found} == {"rose"}
    assert {metric for _, _, metric, _ in found} == {"robust_accuracy"}


def test_untrained_aaa_fails_the_gate_on_the_drop() -> None:
    code, report = check(BROKEN_AAA, REFERENCE)
    assert not report["drift"] and not report["missing"], STALE
    assert code == 1
    found = failures(report)
    assert ("aaa", 0.3, "clean_accuracy", "dropped") in found
    assert {defense for defense, *_ in found} == {"aaa"}  # the undefended rows are untouched
    assert {change for *_, change in found} == {"dropped"}


def test_the_quick_reference_store_passes_against_its_committed_export() -> None:
    # results.db holds the reference rows of several matrices; the quick one is checked by name.
    code, report = check(REPO / "results.db", REPO / "results.quick.json", "--matrix", "quick")
    assert code == 0
    # Every exported row is compared, none drifted or went missing.
    assert len(report["compared"]) == len(json.loads((REPO / "results.quick.json").read_text()))
    assert {c["test"] for c in report["compared"]} == {"mcnemar"}
    assert {c["p_value"] for c in report["compared"]} == {1.0}
