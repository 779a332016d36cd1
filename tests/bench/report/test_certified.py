"""Tests for the report's smoothing and certification views: certified-accuracy-vs-radius tables, the envelope
over sigma, cost per prediction, the not-model-agnostic mark, and rows of metrics the report has no table for.

The store holds one finished matrix "smooth": `smoothing` before a clean-trained classifier A at two noise
levels (one of them at reduced scale), before a noise-trained classifier N (retrains the classifier), an
`irs` front-end whose noise lives after normalization, two plain cells (one from a store that records cost
per prediction, one that does not), and a row of a metric the report does not know.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench.evaluation.rows import Metric as RowMetric
from bench.evaluation.rows import ResultRow
from bench.report.data import CertifiedPoint, CertifiedView, Metric, run_view
from bench.report.pages import matrix_page as build_page
from bench.report.render import render_site
from bench.report.summary import certified_lines
from bench.stats import clopper_pearson
from bench.storage import Store
from bench.storage.models import Result
from bench.uses import EvaluationUse
from tests.bench.report.test_render import Cell, Tables, key, matrix_page, record, rows, start, text, use

REDUCED = "certified on 100 of 10000 test images"
#: Per-channel std of the `irs` pipeline's normalization; a normalized-space radius R is R * min(std) pixels.
STD = (0.2470, 0.2435, 0.2616)
SIGMAS = {0.25: {0.25: 62, 0.5: 41, 1.0: 5}, 0.5: {0.25: 55, 0.5: 47, 1.0: 20, 2.0: 3}}


def smooth_use(defense: str, guides: Sequence[str], target: str, sigma: float, **extra: Any) -> EvaluationUse:
    return EvaluationUse(
        experiment=0,
        kind="native",
        relation="native" if guides else "no-guides",
        defense=defense,
        defense_kind=defense,
        guides=list(guides),
        target=target,
        arch="lenet",
        dataset="mnist",
        threat="l2-certify",
        norm="l2",
        eps=0.0,
        attack="certify",
        sigma=sigma,
        **extra,
    )


def row(
    u: EvaluationUse, metric: RowMetric, eps: float, k: int, n: int, details: dict[str, Any], scale: str
) -> ResultRow:
    low, high = clopper_pearson(k, n)
    return ResultRow(
        dataset=u.dataset,
        defense=u.defense,
        defense_kind=u.defense_kind,
        guides=list(u.guides),
        target=u.target,
        relation=u.relation,
        norm="l2",
        epsilon=eps,
        attack="certify",
        metric=metric,
        n=n,
        successes=k,
        value=k / n,
        ci_low=low,
        ci_high=high,
        wall_s=30.0,
        n_forward=n * 1100,
        n_backward=0,
        scale=scale,
        outcomes="1" * k + "0" * (n - k),
        examples_sha256="e" * 64,
        cost_per_prediction=1100,
        details=details,
    )


def certify(
    store: Store,
    run: int,
    u: EvaluationUse,
    certified: dict[float, int],
    *,
    noise_space: str = "pixel",
    scale: str = "full",
    n: int = 100,
) -> None:
    """Record a certify job: certified accuracy (k of n) per pixel-space radius, abstain and clean at 0."""
    assert u.sigma is not None
    common = {"sigma": u.sigma, "noise_space": noise_space, "n0": 100, "n": 1000, "alpha": 0.001,
              "noise_batch": 500}
    results = [row(u, "abstain_rate", 0.0, 4, n, common, scale),
               row(u, "smoothed_clean_accuracy", 0.0, 80, n, common, scale)]
    for radius, k in certified.items():
        declared = radius / min(STD) if noise_space == "normalized" else radius
        details = common | {"radius_declared": declared}
        results.append(row(u, "certified_accuracy", radius, k, n, details, scale))
    record(store, run, "certify", f"certify {u.defense} {u.guides} -> {u.target} sigma {u.sigma}", [u],
           results=results)


def build(store: Store) -> int:
    run = start(store, "smooth")
    for sigma, certified in SIGMAS.items():
        scale = f"reduced: {REDUCED}" if sigma == 0.5 else "full"
        certify(store, run, smooth_use("smoothing", [], "A", sigma), certified, scale=scale)
    certify(store, run, smooth_use("smoothing", [], "N", 0.25, retrains_classifier=True), {0.25: 90, 0.5: 70})
    certify(store, run, smooth_use("irs", ["A"], "A", 0.25), {0.5: 33}, noise_space="normalized")

    plain = use(1, "cross-model", "cross-model", "aaa", "A", "B")
    record(store, run, "cell", "plain cell", [plain], results=rows(plain, 90, 30))
    # As a store written before rows recorded their cost would hold it.
    at = use(1, "cross-model", "no-guides", "none", "", "B").model_copy(update={"retrains_classifier": True})
    uncosted = [r.model_copy(update={"cost_per_prediction": None}) for r in rows(at, 91, 2)]
    record(store, run, "cell", "uncosted cell", [at], results=uncosted)
    store.finish_run(run, "done")
    return run


def add_unknown_metric(store: Store, run: int) -> None:
    """A row as a later version of the harness might write it: a metric this report has never heard of."""
    label = "uncosted cell"
    job = hashlib.sha256(f"{run}:{label}".encode()).hexdigest()
    low, high = clopper_pearson(7, 10)
    with store.session() as s:
        s.add(
            Result(
                job_key=job, run_id=run, dataset="cifar10", defense="none", defense_kind="none", guides=[],
                target="B", relation="no-guides", norm="linf", epsilon=8 / 255, attack="worst-case",
                metric="agreement_rate", n=10, successes=7, value=0.7, ci_low=low, ci_high=high,
                wall_s=1.0, n_forward=10, n_backward=0, scale="full", outcomes="1111111000",
                examples_sha256="e" * 64, created_at=datetime(2024, 5, 1), details={"why": "<b>new</b>"},
            )
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("smooth") / "r.db")
    add_unknown_metric(store, build(store))
    return store


@pytest.fixture(scope="module")
def site(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    render_site(store, out)
    return out


def ci(k: int, n: int = 100) -> str:
    low, high = clopper_pearson(k, n)
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def certified_table(site: Path) -> list[list[str]]:
    tables = Tables(matrix_page(site, "smooth")).with_class("certified")
    assert len(tables) == 1
    return [[c.text for c in r] for r in tables[0].rows]


# -- tests ---------------------------------------------------------------------------------------------------
def test_certified_table_has_one_column_per_radius_and_one_row_per_sigma(site: Path) -> None:
    table = certified_table(site)
    assert table[0] == ["σ", "noise space", "certificate", "smoothed clean", "abstain", "cost / prediction",
                        "r = 0.25", "r = 0.5", "r = 1", "r = 2"]
    groups = [r[0] for r in table if len(r) == 1]
    assert groups == ["irs [A] → A", "smoothing → A", "smoothing → N not model-agnostic"]
    start_ = table.index(["smoothing → A"])
    sigma_25 = table[start_ + 1]
    assert sigma_25[:6] == ["σ = 0.25", "pixel", "n0 = 100, N = 1,000, α = 0.001 (batch 500)",
                            f"80.0% {ci(80)}", f"4.0% {ci(4)}", "1,100"]
    assert sigma_25[6] == f"62.0% {ci(62)} n = 100"
    assert sigma_25[9] == ""  # sigma 0.25 was not certified at r = 2
    sigma_5 = table[start_ + 2]
    assert sigma_5[0] == "σ = 0.5 reduced1" and sigma_5[9].startswith("3.0% ")


def test_envelope_takes_the_best_sigma_per_radius_and_names_it(site: Path) -> None:
    table = certified_table(site)
    envelope = table[table.index(["smoothing → A"]) + 3]
    assert envelope[:2] == ["envelope over σ ∈ {0.25, 0.5}", "best σ per radius (optimistic)"]
    best = [(max(SIGMAS, key=lambda s: SIGMAS[s].get(r, -1)), r) for r in (0.25, 0.5, 1.0, 2.0)]
    assert [(c.split()[0], c.split("σ = ")[1].split(",")[0]) for c in envelope[2:]] == [
        (f"{SIGMAS[s][r]:.1f}%", f"{s:g}") for s, r in best
    ]
    # A cell taken from the reduced-scale sigma keeps that row's mark.
    assert [c.endswith("reduced1") for c in envelope[2:]] == [False, True, True, True]
    html = text(matrix_page(site, "smooth"))
    assert "as Salman et al. (2020, Table 2) report it" in html and "optimistic" in html
    # A pipeline certified at one sigma only has nothing to choose from: no envelope row.
    assert sum(r[0].startswith("envelope") for r in table) == 1


def test_normalized_noise_shows_the_pixel_and_the_declared_radius(site: Path) -> None:
    table = certified_table(site)
    irs = table[table.index(["irs [A] → A"]) + 1]
    assert irs[1] == "normalized"
    assert irs[7].endswith(f"n = 100 normalized-space radius {0.5 / min(STD):.4g}")
    pixel = table[table.index(["smoothing → A"]) + 1]
    assert "normalized-space" not in " ".join(pixel)


def test_reduced_scale_note_stated_with_certified_rows(site: Path) -> None:
    assert f"Reduced scale: {REDUCED}" in text(matrix_page(site, "smooth"))


def transfer_rows(site: Path) -> dict[str, list[Cell]]:
    tables = Tables(matrix_page(site, "smooth")).with_class("transfer")
    return {r[0].text: r[1:] for t in tables for r in t.rows}


def test_cost_per_prediction_is_shown_and_unknown_is_not_one(site: Path) -> None:
    cells = transfer_rows(site)
    assert cells["aaa [A]"][0].text.endswith("n = 100 · cost/prediction 1 cross-model")
    assert cells["none"][0].text.endswith("n = 100 · cost/prediction unknown undefended")
    boards = Tables((site / "leaderboard.html").read_text(encoding="utf-8")).with_class("leaderboard")
    assert sorted(c.text for c in boards[0].column("inference cost")) == ["1", "unknown"]
    # A smoothed pipeline costs n0 + N forward passes per certified prediction.
    assert {c.text for b in boards[1:] for c in b.column("inference cost")} == {"1,100"}


def test_retrained_classifier_rows_are_marked_not_model_agnostic(site: Path) -> None:
    cells = transfer_rows(site)
    assert "not model-agnostic" in cells["none"][0].text
    assert "not model-agnostic" not in cells["aaa [A]"][0].text
    boards = Tables((site / "leaderboard.html").read_text(encoding="utf-8")).with_class("leaderboard")
    assert sorted(c.text for c in boards[0].column("defense")) == ["aaa", "none not model-agnostic"]
    certified = {c.text for b in boards[1:] for c in b.column("defense")}
    assert "smoothing σ = 0.25 not model-agnostic" in certified and "smoothing σ = 0.5" in certified


def test_a_row_of_an_unknown_metric_is_shown_not_dropped(store: Store, site: Path) -> None:
    run = next(r for r in store.runs() if r.matrix_name == "smooth")
    view = run_view(store, run)
    assert [(o.metric, o.value.successes) for o in view.others] == [("agreement_rate", 7)]
    html = matrix_page(site, "smooth")
    other = Tables(html).with_class("other-results")[0]
    assert [c.text for c in other.rows[1]] == [
        "agreement_rate", "cell", "none not model-agnostic", "B", "worst-case", "linf", "8/255", "70.0%",
        ci(7, 10), "10", "unknown", '{"why": "<b>new</b>"}',
    ]
    assert "<b>new</b>" not in html  # details come from the store: escaped like every other value


def test_every_stored_row_reaches_some_view(store: Store) -> None:
    run = next(r for r in store.runs() if r.matrix_name == "smooth")
    view = run_view(store, run)
    certified = sum(
        len(v.points) + (v.abstain is not None) + (v.smoothed_clean is not None)
        for v in view.certified
    )
    assert 2 * len(view.cells) + certified + len(view.others) == len(store.all_results())


def test_experiment_of_certify_jobs_only_links_to_the_certified_section(store: Store) -> None:
    run = next(r for r in store.runs() if r.matrix_name == "smooth")
    page = build_page(key("smooth"), run_view(store, run), "smooth.html")
    assert [(e.index, e.anchor) for e in page.experiments] == [(0, "certified"), (1, "transfer")]


def test_summary_prints_a_line_per_sigma() -> None:
    acc = Metric(0.5, 0.4, 0.6, 100, 50)
    view = CertifiedView(
        job_key="k", experiment=0, kind="native", defense="smoothing", defense_kind="smoothing", guides=(),
        target="A", dataset="mnist", sigma=0.25, noise_space="pixel", n0=100, samples=None, alpha=0.001,
        noise_batch=None, preset="salman", points=(CertifiedPoint(0.25, 0.25, acc),), abstain=None,
        smoothed_clean=acc, scale="full", wall_s=1.0, cost_per_prediction=None, retrains_classifier=True,
    )
    assert certified_lines([view, view]) == [
        "smoothing [-] -> A, sigma 0.25 (pixel), n0 100, N ?, alpha 0.001: r=0.25: 50.0% "
        "(n = 100, smoothed clean 50.0%); not model-agnostic"
    ]
