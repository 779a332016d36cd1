"""Result rows as ``bench.results_table`` reads them, built by hand for the check's unit tests."""

from __future__ import annotations

from typing import Any

from bench.results_table import COLUMNS
from bench.stats import clopper_pearson


def row(outcomes: str, /, **fields: Any) -> dict[str, Any]:
    """A robust-accuracy row of aaa on C at Linf 0.3 under pgd20 with these per-example outcomes."""
    n, k = len(outcomes), outcomes.count("1")
    low, high = clopper_pearson(k, n)
    base: dict[str, Any] = {c: None for c in COLUMNS}
    base.update(
        run_id=1, matrix="gate", git_commit="abc1234", run_status="done", device="cpu",
        job_key="k-" + str(fields.get("defense", "aaa")) + str(fields.get("eps", 0.3)),
        job_kind="attack", defense="aaa", guides=["C"], target="C", threat="linf", eps=0.3, attack="pgd20",
        metric="robust_accuracy", epsilon=fields.get("eps", 0.3), n=n, successes=k, value=k / n,
        ci_low=low, ci_high=high, scale="full", outcomes=outcomes, examples_sha256="e" * 64,
        config={"attack": "pgd", "params": {"steps": 20}}, frontend_job="f", frontend_config={"lr": 0.001},
        classifier_job="c", classifier_config={"epochs": 1},
    )
    base.update(fields)
    return base
