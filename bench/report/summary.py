"""What ``bench run`` prints when it finishes: every worst-case cell and certified row of the run, how many
rows it has no table for, and the jobs that failed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from bench.report.data import CellView, CertifiedView, run_view
from bench.storage import Store

if TYPE_CHECKING:
    from bench.jobs.spec import JobGraph


def format_metric(value: float, low: float, high: float) -> str:
    return f"{100 * value:5.1f}% [{100 * low:4.1f}, {100 * high:5.1f}]"


def summary_lines(cells: list[CellView]) -> list[str]:
    header = (
        "defense",
        "guides",
        "target",
        "relation",
        "threat",
        "clean (95% CI)",
        "robust (95% CI)",
        "n",
        "notes",
    )
    rows = []
    for c in sorted(cells, key=lambda c: (c.experiment, c.defense, c.guide_label, c.target, c.norm, c.eps)):
        notes = []
        if not c.reliable:
            notes.append("UNRELIABLE: " + ", ".join(name for name, _ in c.failed_checks))
        if c.reduced:
            notes.append("reduced scale")
        rows.append(
            (
                c.defense,
                c.guide_label,
                c.target,
                c.relation,
                f"{c.norm} {c.eps:g}",
                format_metric(c.clean.value, c.clean.low, c.clean.high),
                format_metric(c.robust.value, c.robust.low, c.robust.high),
                str(c.robust.n),
                "; ".join(notes),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def _optional(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def certified_lines(views: list[CertifiedView]) -> list[str]:
    """One line per smoothed pipeline and sigma: certified accuracy at each l2 radius (pixel space)."""
    lines = []
    unique = {(v.job_key, v.defense, v.guides, v.target): v for v in views}
    for v in sorted(unique.values(), key=lambda v: (v.defense, v.guides, v.target, v.sigma or 0.0)):
        where = f"{v.defense} [{'+'.join(v.guides) or '-'}] -> {v.target}"
        params = (
            f"sigma {_optional(v.sigma)} ({v.noise_space}), n0 {_optional(v.n0)}, N {_optional(v.samples)}, "
            f"alpha {_optional(v.alpha)}"
        )
        radii = ", ".join(f"r={p.radius:g}: {100 * p.accuracy.value:.1f}%" for p in v.points)
        n = v.points[0].accuracy.n if v.points else 0
        clean = f", smoothed clean {100 * v.smoothed_clean.value:.1f}%" if v.smoothed_clean else ""
        abstain = f", abstain {100 * v.abstain.value:.1f}%" if v.abstain else ""
        notes = "; reduced scale" if v.reduced else ""
        notes += "; not model-agnostic" if v.retrains_classifier else ""
        lines.append(f"{where}, {params}: {radii} (n = {n}{clean}{abstain}){notes}")
    return lines


def print_run_summary(store: Store, run_id: int) -> None:
    run = next(r for r in store.runs() if r.id == run_id)
    view = run_view(store, run)
    cells = [c for c in view.cells if c.worst_case]
    if cells:
        click.echo("\nworst case over all attacks, per cell:")
        for line in summary_lines(cells):
            click.echo(line)
    if view.certified:
        click.echo("\ncertified accuracy of the smoothed classifier by l2 radius in [0,1] pixel space:")
        for line in certified_lines(view.certified):
            click.echo(line)
    if view.others:
        metrics = ", ".join(sorted({o.metric for o in view.others}))
        click.echo(f"\n{len(view.others)} further row(s) without a table here ({metrics}): see bench report")
    stated = (run.matrix or {}).get("scale")
    if stated:
        click.echo(f"\nscale, as the matrix states it: {stated}")
    scales = [c.scale for c in cells] + [v.scale for v in view.certified]
    reduced = [s.removeprefix("reduced: ") for s in scales if s != "full"]
    parts = list(dict.fromkeys(part for s in reduced for part in s.split("; ")))
    if parts:
        click.echo("\nreduced scale (numbers above are not full-protocol numbers):")
        for part in parts:
            click.echo(f"  - {part}")


def failed_lines(graph: JobGraph, failed: Mapping[str, str]) -> list[str]:
    """One line per failed job: its label, kind and key (to find its traceback in the store), and why."""
    return [f"failed   {graph[k].label} ({graph[k].kind}, key {k[:12]}): {why}" for k, why in failed.items()]


def blocked_lines(graph: JobGraph, blocked: Mapping[str, Sequence[str]]) -> list[str]:
    """One line per job left out because a job upstream of it failed."""
    return [
        f"blocked  {graph[key].label}: waits on {', '.join(graph[k].label for k in waits_on)}"
        for key, waits_on in blocked.items()
    ]
