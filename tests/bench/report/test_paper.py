"""Tests for bench.report.paper: which of the matrix's numbers each entry of a paper's table names, and the
page that prints the paper's table with both numbers and their difference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.config import PaperSelector
from bench.report.data import AttackView, RunView
from bench.report.paper import PaperEntry, ours, paper_section
from tests.bench.report.test_figures import figs_page, metric, site, view_cell  # noqa: F401  (fixture)
from tests.bench.report.test_leaderboard import certified, run
from tests.bench.report.test_render import Tables, text

EPS = 8 / 255


def entry(**fields: Any) -> PaperSelector:
    return PaperSelector.model_validate({"defense": "rtfe", "target": "R56", **fields})


def attack(name: str, robust: float, cascade: bool) -> AttackView:
    return AttackView(
        job_key=name, experiment=0, defense="rtfe", guides=("R20",), target="R56", threat="linf", norm="linf",
        eps=EPS, attack=name, clean=metric(0.9), robust=metric(robust), run_on=90, broke=10, cascade=cascade,
        scale="full", wall_s=1.0, n_forward=1, n_backward=1,
    )


@pytest.fixture
def view() -> RunView:
    v = RunView(run(1, "cpu"))
    v.cells = [
        view_cell("rtfe", "R56", EPS, 0.40, guides=("R20",), relation="cross-model"),
        view_cell("rtfe", "R56", 4 / 255, 0.55, guides=("R20",), relation="cross-model"),
        view_cell("rtfe", "R56", EPS, 0.30, guides=("R32",), relation="cross-model",
                  scale="reduced: 100 of 10000 test images"),
        *(view_cell("rtfe", "R56", EPS, value, guides=guides, kind="ensemble-size", m=2, draw=draw,
                    job_key=f"m2-{draw}")
          for draw, (guides, value) in enumerate(((("R20", "R32"), 0.40), (("R20", "R44"), 0.50)))),
    ]
    v.attacks = [attack("pgd", 0.45, cascade=False), attack("apgd", 0.42, cascade=True)]
    v.certified = [
        certified(0.25, {0.25: 0.62, 0.5: 0.41}, defense="rtfe", target="R56", guides=("R20",)),
        certified(0.5, {0.25: 0.55, 0.5: 0.47}, defense="rtfe", target="R56", guides=("R20",)),
    ]
    return v


def test_an_entry_names_one_worst_case_cell(view: RunView) -> None:
    found, missing = ours(entry(guides=["R20"], threat="linf", eps=EPS), view)
    assert missing == "" and found is not None
    assert (found.value, found.interval, found.draws) == (0.40, metric(0.40), 1)
    clean, _ = ours(entry(guides=["R20"], metric="clean"), view)  # clean accuracy needs no radius
    assert clean is not None and clean.value == 0.9
    reduced, _ = ours(entry(guides=["R32"]), view)
    assert reduced is not None and reduced.reduced == ["reduced: 100 of 10000 test images"]


@pytest.mark.parametrize(
    "fields, why",
    [
        # Ensemble-size draws are left out without m (the draw on R20+R32 shares no job with these cells).
        ({"eps": EPS}, "several guide sets match (R20, R32); give guides"),
        ({"guides": ["R20"]}, "several radii match; give threat and eps"),
        ({"guides": ["R44"], "eps": EPS}, "not computed"),
        ({"guides": ["R20"], "radius": 1.0}, "not certified at this radius"),
    ],
)
def test_an_entry_that_names_no_single_number_says_why(
    view: RunView, fields: dict[str, Any], why: str
) -> None:
    assert ours(entry(**fields), view) == (None, why)


def test_an_ensemble_size_entry_is_the_mean_over_draws_with_their_range(view: RunView) -> None:
    found, _ = ours(entry(m=2, eps=EPS), view)
    assert found is not None and found.interval is None
    assert (found.value, found.draws, found.low, found.high) == (pytest.approx(0.45), 2, 0.40, 0.50)
    one, _ = ours(entry(m=2, guides=["R32", "R20"], eps=EPS), view)  # guides in any order
    assert one is not None and one.value == 0.40


def test_an_attack_entry_is_that_attacks_number_and_a_cascade_says_so(view: RunView) -> None:
    pgd, _ = ours(entry(guides=["R20"], attack="pgd"), view)
    assert pgd is not None and (pgd.value, pgd.note) == (0.45, "")
    apgd, _ = ours(entry(guides=["R20"], attack="apgd"), view)
    assert apgd is not None and apgd.note == "worst case of the cascade up to this attack"


def test_a_certified_entry_takes_its_sigma_or_the_best_one(view: RunView) -> None:
    fixed, _ = ours(entry(guides=["R20"], radius=0.5, sigma=0.25), view)
    assert fixed is not None and (fixed.value, fixed.note) == (0.41, "")
    best, _ = ours(entry(guides=["R20"], radius=0.5), view)  # metric: certified follows from the radius
    assert best is not None and (best.value, best.note) == (0.47, "best σ = 0.5")


def test_difference_and_whether_the_paper_is_inside_our_interval(view: RunView) -> None:
    found, _ = ours(entry(guides=["R20"], eps=EPS, threat="linf"), view)  # 40% [30, 50]
    near, far = PaperEntry(48.0, found), PaperEntry(55.0, found)
    assert near.difference == pytest.approx(-8.0) and near.within is True
    assert far.difference == pytest.approx(-15.0) and far.within is False
    assert PaperEntry(None, found).difference is None
    assert PaperEntry(48.0, None, "not computed").within is None


def test_a_paper_block_the_schema_no_longer_reads_is_reported_not_raised(view: RunView) -> None:
    view.run.matrix = {"paper": {"source": "x", "tables": [{"title": "t", "rows": [], "columns": []}]}}
    section = paper_section(view)
    assert section is not None and section.tables == [] and "could not be read" in section.problem
    view.run.matrix = {}
    assert paper_section(view) is None


def test_the_page_prints_the_papers_table_with_both_numbers(site: Path) -> None:  # noqa: F811
    html = figs_page(site)
    tables = Tables(html).with_class("paper")
    assert len(tables) == 2
    cann = tables[0]
    assert [(c.text, c.attrs.get("colspan")) for c in cann.rows[0][1:]] == [
        ("inc.", "1"), ("exc.", "2"), ("", "1")
    ]
    assert [c.text for c in cann.rows[1]] == ["", "ResNet-20", "ResNet-32", "ResNet-56", "clean R20"]
    rtfe = cann.row("RTFE")
    assert rtfe[1].text == "ours 40.0% [30.3, 50.3] paper 48% Δ -8.0 pp"
    assert rtfe[2].text == "ours 20.0% [12.7, 29.2] paper –"  # a number the paper does not give
    # rtfe [R20] met R56 only as an ensemble-size draw, which a row without m does not name.
    assert rtfe[3].attrs["class"] == "empty"
    assert cann.row("RTFE, m = 2")[3].text == "ours 40.5% mean of 2 draws, 40.0%–41.0% paper 35% Δ +5.5 pp"
    undefended = cann.row("No defense")
    assert undefended[3].attrs["class"] == "empty"  # neither the paper nor the matrix has it
    # 3% [0.6, 8.5] against the paper's 0%: shaded, since the paper's number is outside our interval.
    assert undefended[1].attrs["class"] == "cell outside"
    salman = tables[1]
    assert [c.text for c in salman.row("best σ")[1:]] == [
        "ours 62.0% [51.7, 71.5] paper 61% Δ +1.0 pp best σ = 0.25",
        "ours 47.0% [36.9, 57.2] paper 47% Δ +0.0 pp best σ = 0.5",
    ]
    assert "Table 2: certified · Salman et al. 2020" in text(html)
