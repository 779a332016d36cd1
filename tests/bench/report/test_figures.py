"""Tests for the report's plots (bench.report.plots) and the sample images (bench.report.samples), on small
in-memory views and on one rendered store that has something for every plot.

The store "figs" holds: rtfe [R20] and the undefended none at three linf radii on R20 and R32 (accuracy
against epsilon), four `unet` front-ends that differ in exactly two parameters (a heat map), rtfe at ensemble
sizes 1 and 2 with two draws each on R56 (accuracy against m), and a smoothing front-end certified at two
sigmas (certified accuracy against radius); its matrix declares a paper table of Cann-like shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from matplotlib.figure import Figure

from bench.report.data import CellView, Metric, RunView
from bench.report.plots import eps_plots, inline_svg, parameter_grids
from bench.report.render import render_site
from bench.report.samples import front_end_samples, sample_plot
from bench.storage import Store
from bench.uses import EvaluationUse, ExperimentKind, FrontEndUse, Relation
from tests.bench.report.test_certified import certify, smooth_use
from tests.bench.report.test_render import HOSTILE, record, rows

EPS = (2 / 255, 4 / 255, 8 / 255)
GRID = {"u-1-a": (1, "a"), "u-1-b": (1, "b"), "u-2-a": (2, "a"), "u-2-b": (2, "b")}
#: The matrix file's paper block, as a run stores it: a Cann-like table (defenses down, targets across in
#: guide groups), an ensemble-size row, and a Salman-like certified table.
PAPER: dict[str, Any] = {
    "source": "Cann et al. 2022",
    "tables": [
        {
            "title": "Table 1: CIFAR-10, linf 8/255",
            "threat": "linf",
            "eps": 8 / 255,
            "rows": [
                {"label": "No defense", "defense": "none"},
                {"label": "RTFE", "defense": "rtfe", "guides": ["R20"]},
                {"label": "RTFE, m = 2", "defense": "rtfe", "m": 2},
            ],
            "columns": [
                {"label": "ResNet-20", "target": "R20", "group": "inc."},
                {"label": "ResNet-32", "target": "R32", "group": "exc."},
                {"label": "ResNet-56", "target": "R56", "group": "exc."},
                {"label": "clean R20", "target": "R20", "metric": "clean"},
            ],
            "numbers": [[0.0, 0.0, None, 92.0], [48.0, None, None, 80.0], [None, None, 35.0, None]],
        },
        {
            "title": "Table 2: certified",
            "source": "Salman et al. 2020",
            "defense": "smoothing",
            "target": "A",
            "rows": [{"label": "σ = 0.25", "sigma": 0.25}, {"label": "best σ"}],
            "columns": [{"label": "r = 0.25", "radius": 0.25}, {"label": "r = 0.5", "radius": 0.5}],
            "numbers": [[60.0, 20.0], [61.0, 47.0]],
        },
    ],
}


def evaluation(
    exp: int,
    kind: ExperimentKind,
    relation: Relation,
    defense: str,
    guides: Sequence[str],
    target: str,
    eps: float,
    **extra: Any,
) -> EvaluationUse:
    return EvaluationUse(
        experiment=exp, kind=kind, relation=relation, defense=defense,
        defense_kind="none" if defense == "none" else "rtfe", guides=list(guides), target=target,
        arch="resnet20", dataset="cifar10", train_dataset="cifar10", threat="linf", norm="linf", eps=eps,
        attack="worst-case", **extra,
    )


def cell(store: Store, run: int, u: EvaluationUse, clean: int, robust: int, label: str) -> None:
    flags = [{"check": "fgsm-le-pgd", "passed": True, "detail": "ok"}]
    record(store, run, "cell", label, [u], results=rows(u, clean, robust), flags=flags)


def build_figures(store: Store) -> int:
    run = store.start_run(
        matrix_name="figs", matrix_path="matrices/figs.yaml", matrix_sha256="f" * 64,
        matrix={"name": "figs", "paper": PAPER}, git_commit="0123456789abcdef0123",
        device="cuda: NVIDIA H200", versions={"python": "3.11.9"},
    )
    record(store, run, "train-defense", "front-end rtfe R20", [FrontEndUse(defense="rtfe", guides=["R20"])],
           config={"kind": "rtfe", "params": {"scale": 1}, "seed": 0})
    for i, eps in enumerate(EPS):
        cell(store, run, evaluation(0, "native", "native", "rtfe", ["R20"], "R20", eps), 80, 60 - 10 * i,
             f"rtfe R20 {i}")
        cell(store, run, evaluation(0, "cross-model", "cross-model", "rtfe", ["R20"], "R32", eps), 85,
             40 - 10 * i, f"rtfe R32 {i}")
        for target in ("R20", "R32"):
            cell(store, run, evaluation(0, "native", "no-guides", "none", [], target, eps), 92, 5 - i,
                 f"none {target} {i}")
    for label, (a, b) in GRID.items():
        uses = [FrontEndUse(defense=label, guides=["R20"])]
        record(store, run, "train-defense", f"front-end {label}", uses,
               config={"kind": "unet", "params": {"a": a, "b": b, "epochs": 4}, "seed": 0})
        cell(store, run, evaluation(1, "native", "native", label, ["R20"], "R20", EPS[2]), 80,
             10 * a + (5 if b == "b" else 0), f"grid {label}")
    for m, pools in ((1, (["R20"], ["R32"])), (2, (["R20", "R32"], ["R20", "R44"]))):
        for draw, guides in enumerate(pools):
            u = evaluation(2, "ensemble-size", "cross-model", "rtfe", guides, "R56", EPS[2], m=m, draw=draw)
            cell(store, run, u, 84, 20 + 10 * m + draw, f"size {m} {draw}")
    certify(store, run, smooth_use("smoothing", [], "A", 0.25), {0.25: 62, 0.5: 41})
    certify(store, run, smooth_use("smoothing", [], "A", 0.5), {0.25: 55, 0.5: 47})
    store.finish_run(run, "done")
    return run


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("figs")
    store = Store(root / "r.db")
    build_figures(store)
    render_site(store, root / "site", artifacts=None)
    return root / "site"


def figs_page(site: Path) -> str:
    return next(site.glob("matrix-figs-*.html")).read_text(encoding="utf-8")


# -- in-memory views -----------------------------------------------------------------------------------------
def metric(value: float, n: int = 100) -> Metric:
    return Metric(value, max(0.0, value - 0.1), min(1.0, value + 0.1), n, round(value * n))


def view_cell(defense: str, target: str, eps: float, robust: float, **extra: Any) -> CellView:
    fields: dict[str, Any] = dict(
        job_key=f"{defense}-{target}-{eps}", run_id=1, matrix="m", experiment=0, kind="native",
        relation="native", defense=defense, defense_kind="rtfe", guides=("R20",), target=target, arch="r",
        dataset="cifar10", train_dataset="cifar10", threat="linf", norm="linf", eps=eps, attack="worst-case",
        clean=metric(0.9), robust=metric(robust), scale="full", wall_s=1.0, n_forward=1, n_backward=1,
    )
    return CellView(**(fields | extra))


def test_accuracy_against_epsilon_needs_two_radii_of_one_pipeline() -> None:
    one = [view_cell("rtfe", "R20", 8 / 255, 0.5), view_cell("none", "R20", 8 / 255, 0.0)]
    assert eps_plots(one, 1) == []
    two = [*one, view_cell("rtfe", "R20", 4 / 255, 0.6)]
    (plot,) = eps_plots(two, 3)
    assert plot.anchor == "plot-3" and "linf" in plot.title
    # A line for the pipeline at two radii (from clean accuracy at 0), none for the one at a single radius;
    # the radii labelled as multiples of 1/255.
    svg = str(plot.svg)
    assert "rtfe [R20]" in svg and "none [R20]" not in svg and "8/255" in svg and "4/255" in svg


def test_inline_svg_is_self_contained_and_its_ids_do_not_collide() -> None:
    svgs = []
    for anchor in ("plot-1", "plot-2"):
        fig = Figure()
        ax = fig.subplots()
        ax.plot([0, 1], [1, 0], label=HOSTILE + " $x$")
        ax.legend()
        svgs.append(str(inline_svg(fig, anchor, HOSTILE)))
    for anchor, svg in zip(("plot-1", "plot-2"), svgs, strict=True):
        assert svg.startswith('<svg class="plot" role="img" aria-label="&lt;script&gt;')
        assert "<script" not in svg and "http" not in svg and "<?xml" not in svg and "<metadata" not in svg
        ids = re.findall(r'\bid="([^"]+)"', svg)
        assert ids and all(i.startswith(f"{anchor}-") for i in ids)
        refs = re.findall(r'(?:url\(#|href="#)([^")]+)', svg)
        assert refs and set(refs) <= set(ids)  # every internal reference still resolves
        assert "&lt;script&gt;alert(1)&lt;/script&gt; $x$" in svg  # escaped text, no mathtext
    assert not set(re.findall(r'\bid="([^"]+)"', svgs[0])) & set(re.findall(r'\bid="([^"]+)"', svgs[1]))


def frontends(params: dict[str, dict[str, Any]], kind: str = "unet") -> RunView:
    view = RunView(run=None)  # type: ignore[arg-type]  # the grid reads only the front-ends
    view.frontends = [
        {"label": label, "guides": ["R20"], "key": label, "config": {"kind": kind, "params": p},
         "metrics": {}, "wall_s": 1.0, "run_id": 1}
        for label, p in params.items()
    ]
    return view


def test_a_heat_map_needs_exactly_two_swept_parameters() -> None:
    two = {label: {"a": a, "b": b, "epochs": 4} for label, (a, b) in GRID.items()}
    assert parameter_grids(frontends(two)) == [
        ("unet", "a", "b", {label: (a, b) for label, (a, b) in GRID.items()})
    ]
    three = {label: {**p, "epochs": i} for i, (label, p) in enumerate(two.items())}
    assert parameter_grids(frontends(three)) == []
    assert parameter_grids(frontends(dict(list(two.items())[:2]))) == []


def test_sample_plot_shows_input_output_and_difference() -> None:
    x = torch.zeros(2, 1, 8, 8)
    y = x.clone()
    y[:, :, 2:4, 2:4] = 0.5
    plot = sample_plot("jpeg", "mnist", x, y, "plot-7")
    svg = str(plot.svg)
    assert plot.anchor == "plot-7" and "jpeg" in plot.title
    assert svg.count("<image") == 2 * 3 + 1  # two images: input, output, |difference| each; the colour bar
    assert "(0.5)" in plot.caption  # the colour scale's top: the largest difference


def test_front_ends_without_artifacts_say_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    run = build_figures(store)
    view = RunView(next(r for r in store.runs() if r.id == run))
    config = {"kind": "rtfe", "params": {}, "input_shape": [3, 32, 32], "dataset": "cifar10"}
    view.frontends = [{"label": "rtfe", "guides": ["R20"], "key": "k", "config": config, "wall_s": 1.0,
                       "run_id": run}]
    samples = front_end_samples(store, view, None, None, 1)
    assert samples.plots == [] and samples.missing == [("rtfe [R20]", "artifacts not available")]


# -- the rendered page ---------------------------------------------------------------------------------------
def test_every_plot_is_on_the_page_numbered_in_order(site: Path) -> None:
    html = figs_page(site)
    anchors = re.findall(r'<figure class="plot" id="(plot-\d+)">', html)
    assert anchors == [f"plot-{i}" for i in range(1, 5)]
    titles = re.findall(r"<figcaption><strong>([^<]+)\.</strong>", html)
    assert titles == [
        "Accuracy against linf ε (guides of cifar10)",
        "unet: robust accuracy over a × b, linf ε = 8/255",
        "rtfe: accuracy against ensemble size, linf ε = 8/255",
        "mnist: certified accuracy against radius",
    ]
    assert html.count("<svg") == 4
    # The heat map prints each grid cell's number; the sizes plot has a dot per draw.
    assert all(f"{v:.1f}" in html for v in (10.0, 15.0, 20.0, 25.0))


def test_front_end_pictures_say_when_artifacts_are_missing(site: Path) -> None:
    html = figs_page(site)
    missing = re.findall(r'<li>([^<]+): <span class="muted">([^<]+)</span></li>', html)
    labels = ["rtfe [R20]", *(f"{g} [R20]" for g in GRID)]
    assert missing == [(label, "artifacts not available") for label in labels]
