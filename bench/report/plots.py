"""The matrix page's plots, drawn with matplotlib and inlined as SVG so a report stays one folder of HTML.

- accuracy against radius, one line per front-end (Cann et al. 2022, Figs. 5-7);
- certified accuracy against l2 radius, one line per smoothed pipeline and sigma (Salman et al. 2020, Fig. 2);
- clean and robust accuracy against ensemble size, with the spread over draws (Cann et al. 2022, Fig. 8);
- robust accuracy over a grid of two defense parameters, where a matrix sweeps two (Norouzzadeh et al.,
  Fig. S.3).

Figures are drawn through matplotlib's object API (``Figure``, never pyplot), so no GUI backend or global
figure state is involved and rendering is safe in any process. Labels come from matrix files, which are not
trusted: matplotlib escapes the text it writes into SVG, and mathtext is off so a ``$`` in a name is only a
character. Each SVG's ids are prefixed with its plot's anchor,
since a page holds many plots and their ids must not collide.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import matplotlib
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.report.data import CellView, RunView
from bench.report.format import eps_label, row_label
from bench.report.pages import CertifiedTable, MatrixPage, SizePoint, SizeSection

_MAX_PANELS = 8
_PANEL_W, _PANEL_H = 3.4, 2.6


@dataclass(frozen=True)
class Plot:
    anchor: str
    title: str
    caption: str
    svg: Markup


@contextmanager
def style() -> Iterator[None]:
    """Deterministic ids (the same SVG on every render), text as text (small, selectable, searchable), no
    mathtext (names are not TeX), and a size that reads beside the tables."""
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "frontline",
            "text.parse_math": False,
            "font.size": 9,
            "font.family": "sans-serif",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 8,
            "legend.frameon": False,
        }
    ):
        yield


_SVG_START = re.compile(r"<svg\b")
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_REFS = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def inline_svg(fig: Figure, anchor: str, label: str) -> Markup:
    """``fig`` as an SVG element for an HTML page: no XML prolog, DOCTYPE, metadata or namespace declarations
    (the HTML parser puts inline SVG in its namespace, and none of them may point off the page), ids
    prefixed with ``anchor``, and an accessible name."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    start = _SVG_START.search(text)
    assert start is not None, "matplotlib wrote no <svg> element"
    svg = _XMLNS.sub("", _METADATA.sub("", text[start.start() :]))
    svg = _REFS.sub(lambda m: f"{m.group(1)}{anchor}-{m.group(2)}", svg)
    svg = svg.replace("<svg", f'<svg class="plot" role="img" aria-label="{html.escape(label)}"', 1)
    return Markup(svg)


def panels(panels: int, cols: int = 3) -> tuple[Figure, list[Axes]]:
    cols = max(1, min(cols, panels))
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(_PANEL_W * cols, _PANEL_H * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _percent_axis(ax: Axes) -> None:
    ax.set_ylim(-2, 102)
    ax.set_ylabel("accuracy (%)")


def _eps_ticks(ax: Axes, norm: str, values: Sequence[float]) -> None:
    ax.set_xticks(list(values), [eps_label(norm, v) if v else "0" for v in values])


# -- accuracy vs epsilon -------------------------------------------------------------------------------------
def eps_plots(cells: list[CellView], start: int) -> list[Plot]:
    """Per norm and guide dataset, one panel per target, one line per front-end and guide set evaluated at
    two or more radii: robust accuracy (worst case over the attacks) against the radius, starting from clean
    accuracy at 0, with the 95% interval of each point."""
    worst = [c for c in cells if c.worst_case and c.kind != "ensemble-size"]
    groups: dict[tuple[str, str], list[CellView]] = {}
    for c in worst:
        groups.setdefault((c.norm, c.train_dataset), []).append(c)
    plots: list[Plot] = []
    for (norm, dataset), group in sorted(groups.items()):
        every: dict[tuple[str, str], dict[float, CellView]] = {}
        for c in group:
            every.setdefault((c.target, row_label(c.defense, c.guides)), {}).setdefault(round(c.eps, 9), c)
        # A pipeline at one radius is no curve (a line from its clean accuracy would suggest one).
        lines = {where: points for where, points in every.items() if len(points) > 1}
        if not lines:
            continue
        targets = list(dict.fromkeys(t for t, _ in lines))[:_MAX_PANELS]
        with style():
            fig, axes = panels(len(targets))
            for ax, target in zip(axes, targets, strict=True):
                radii: set[float] = {0.0}
                for (t, label), points in lines.items():
                    if t != target:
                        continue
                    ordered = [points[e] for e in sorted(points)]
                    xs = [0.0, *(c.eps for c in ordered)]
                    first = ordered[0]
                    metrics = [first.clean, *(c.robust for c in ordered)]
                    ys = [100 * m.value for m in metrics]
                    below = [100 * (m.value - m.low) for m in metrics]
                    err = [below, [100 * (m.high - m.value) for m in metrics]]
                    ax.errorbar(xs, ys, yerr=err, marker="o", markersize=3, capsize=2, label=label)
                    radii.update(xs)
                ax.set_title(f"target {target}")
                ax.set_xlabel(f"{norm} ε")
                _eps_ticks(ax, norm, sorted(radii))
                _percent_axis(ax)
                ax.legend(loc="best")
            anchor = f"plot-{start + len(plots)}"
            title = f"Accuracy against {norm} ε (guides of {dataset})"
            plots.append(
                Plot(
                    anchor,
                    title,
                    "Robust accuracy (worst case over the attacks) of each front-end and guide set against "
                    "the radius, with 95% intervals; at ε = 0 the clean accuracy. As in Cann et al. (2022), "
                    "Figs. 5-7.",
                    inline_svg(fig, anchor, title),
                )
            )
    return plots


# -- certified accuracy vs radius ----------------------------------------------------------------------------
def certified_plots(tables: list[CertifiedTable], start: int) -> list[Plot]:
    """Per dataset, certified accuracy against l2 radius (pixel space), one line per smoothed pipeline and
    sigma with a 95% band, as Salman et al. (2020), Fig. 2 plot it."""
    plots: list[Plot] = []
    for table in tables:
        with style():
            fig, (ax,) = panels(1)
            fig.set_size_inches(_PANEL_W * 1.6, _PANEL_H * 1.3)
            for group in table.groups:
                for row in group.rows:
                    points = [p for p in row.points if p is not None]
                    if not points:
                        continue
                    sigma = "?" if row.view.sigma is None else f"{row.view.sigma:g}"
                    label = f"{row_label(group.defense, group.guides)} → {group.target}, σ = {sigma}"
                    xs = [p.radius for p in points]
                    ys = [100 * p.accuracy.value for p in points]
                    (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=label)
                    low = [100 * p.accuracy.low for p in points]
                    high = [100 * p.accuracy.high for p in points]
                    ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
            ax.set_xlabel("ℓ2 radius ([0,1] pixel space)")
            _percent_axis(ax)
            ax.set_ylabel("certified accuracy (%)")
            ax.legend(loc="best")
            anchor = f"plot-{start + len(plots)}"
            title = f"{table.dataset}: certified accuracy against radius"
            plots.append(
                Plot(
                    anchor,
                    title,
                    "Certified accuracy of each smoothed pipeline at each radius it was certified at, with "
                    "its 95% interval as a band. As in Salman et al. (2020), Fig. 2.",
                    inline_svg(fig, anchor, title),
                )
            )
    return plots


# -- ensemble size -------------------------------------------------------------------------------------------
def size_plots(section: SizeSection, start: int) -> list[Plot]:
    """Per threat block and front-end, clean (dashed) and robust (solid) accuracy against ensemble size m
    per held-out target: the mean over draws of guide sets, their range as a band, each draw as a dot."""
    plots: list[Plot] = []
    for block in section.blocks:
        for sizes in block.tables:
            with style():
                fig, (ax,) = panels(1)
                fig.set_size_inches(_PANEL_W * 1.5, _PANEL_H * 1.3)
                for target, points in sizes.rows:
                    present = [(m, p) for m, p in zip(sizes.sizes, points, strict=True) if p is not None]
                    if not present:
                        continue
                    ms = [m for m, _ in present]
                    for which, dash in (("robust", "-"), ("clean", "--")):
                        draws = [_draw_values(p, which) for _, p in present]
                        means = [sum(v) / len(v) for v in draws]
                        label = f"{target} {which}"
                        (line,) = ax.plot(ms, means, dash, marker="o", markersize=3, label=label)
                        ax.fill_between(ms, [min(v) for v in draws], [max(v) for v in draws],
                                        color=line.get_color(), alpha=0.15)
                        for m, v in zip(ms, draws, strict=True):
                            ax.plot([m] * len(v), v, ".", color=line.get_color(), alpha=0.6)
                ax.set_xticks(sizes.sizes)
                ax.set_xlabel("ensemble size m (guides)")
                _percent_axis(ax)
                ax.legend(loc="best")
                anchor = f"plot-{start + len(plots)}"
                title = f"{sizes.defense}: accuracy against ensemble size, {block.norm} ε = " \
                        f"{eps_label(block.norm, block.eps)}"
                plots.append(
                    Plot(
                        anchor,
                        title,
                        "Clean (dashed) and robust (solid) accuracy on each held-out target against the "
                        "number of guides: the mean over draws of guide sets, their range as a band and each "
                        "draw as a dot. As in Cann et al. (2022), Fig. 8.",
                        inline_svg(fig, anchor, title),
                    )
                )
    return plots


def _draw_values(point: SizePoint, which: str) -> list[float]:
    """Each draw's clean or robust accuracy, in percent."""
    return [100 * (c.robust if which == "robust" else c.clean).value for c in point.draws]


# -- a grid of two defense parameters ------------------------------------------------------------------------
def _value_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return (1, 0.0, json.dumps(value, sort_keys=True))
    return (0, float(value), "")


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parameter_grids(view: RunView) -> list[tuple[str, str, str, dict[str, tuple[Any, Any]]]]:
    """Defenses of one kind whose parameters differ in exactly two keys, each taking two or more values:
    (kind, first key, second key, defense label -> (first value, second value))."""
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for f in view.frontends:
        config = f["config"]
        params = config.get("params")
        if isinstance(params, dict):
            by_kind.setdefault(str(config.get("kind", "")), {}).setdefault(str(f["label"]), params)
    grids = []
    for kind, labels in sorted(by_kind.items()):
        if len(labels) < 4:
            continue
        keys = sorted({k for params in labels.values() for k in params})
        varying = [k for k in keys if len({_dump(p.get(k)) for p in labels.values()}) > 1]
        if len(varying) != 2:
            continue
        first, second = varying
        grids.append((kind, first, second, {lab: (p.get(first), p.get(second)) for lab, p in labels.items()}))
    return grids


def grid_plots(view: RunView, start: int) -> list[Plot]:
    """Robust accuracy as a heat map over the two parameters a matrix sweeps (Norouzzadeh et al., Fig. S.3):
    one panel per target and guide set at each radius."""
    plots: list[Plot] = []
    worst = [c for c in view.cells if c.worst_case and c.kind != "ensemble-size"]
    for kind, first, second, values in parameter_grids(view):
        xs = sorted({v[0] for v in values.values()}, key=_value_key)
        ys = sorted({v[1] for v in values.values()}, key=_value_key)
        mine = [c for c in worst if c.defense in values]
        for norm, eps in sorted({(c.norm, round(c.eps, 9)) for c in mine}):
            at = [c for c in mine if c.norm == norm and round(c.eps, 9) == eps]
            places = list(dict.fromkeys((c.target, c.guides) for c in at))[:_MAX_PANELS]
            with style():
                fig, axes = panels(len(places))
                for ax, (target, guides) in zip(axes, places, strict=True):
                    grid = [[math.nan] * len(xs) for _ in ys]
                    for c in at:
                        if (c.target, c.guides) == (target, guides):
                            x, y = values[c.defense]
                            grid[ys.index(y)][xs.index(x)] = 100 * c.robust.value
                    image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", origin="lower", aspect="auto")
                    for i, row in enumerate(grid):
                        for j, v in enumerate(row):
                            if not math.isnan(v):
                                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                                        color="white" if v < 60 else "black")
                    ax.set_xticks(range(len(xs)), [_shown(x) for x in xs])
                    ax.set_yticks(range(len(ys)), [_shown(y) for y in ys])
                    ax.set_xlabel(first)
                    ax.set_ylabel(second)
                    ax.grid(False)
                    ax.set_title(f"target {target}" + (f", guides {'+'.join(guides)}" if guides else ""))
                fig.colorbar(image, ax=axes, label="robust accuracy (%)", shrink=0.8)
                anchor = f"plot-{start + len(plots)}"
                title = f"{kind}: robust accuracy over {first} × {second}, {norm} ε = {eps_label(norm, eps)}"
                plots.append(
                    Plot(
                        anchor,
                        title,
                        f"Robust accuracy of the {kind} front-ends of this matrix, which differ only in "
                        f"{first} and {second}; blank: not evaluated. As in Norouzzadeh et al., Fig. S.3.",
                        inline_svg(fig, anchor, title),
                    )
                )
    return plots


def page_plots(page: MatrixPage, view: RunView) -> dict[str, list[Plot]]:
    """The page's plots by the section they follow: ``transfer``, ``grid``, ``certified`` and each size
    section's anchor; numbered in page order."""
    out: dict[str, list[Plot]] = {}

    def add(where: str, build: Callable[[int], list[Plot]]) -> None:
        made = build(1 + sum(len(p) for p in out.values()))
        if made:
            out[where] = made

    add("transfer", lambda n: eps_plots(view.cells, n))
    add("grid", lambda n: grid_plots(view, n))
    for section in page.size_sections:
        add(section.anchor, partial(size_plots, section))
    add("certified", lambda n: certified_plots(page.certified_tables, n))
    return out
