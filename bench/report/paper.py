"""A paper's tables with the paper's numbers beside the matrix's own (the matrix file's ``paper:`` block).

Each entry of a paper's table names, through its row, its column and the table (:class:`bench.config.
PaperSelector`), one number of the matrix: a worst-case cell's clean or robust accuracy, one attack's robust
accuracy, the mean over draws at an ensemble size, or certified accuracy at a radius. The page prints the
paper's layout with both numbers and their difference, so a reader sees at a glance where a reproduction
agrees; an entry that is reduced in scale says so in the same cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from bench.config import PaperConfig, PaperSelector, PaperTable
from bench.report.data import AttackView, CellView, CertifiedView, Metric, RunView

_CLOSE = 1e-9


@dataclass(frozen=True)
class Ours:
    """The matrix's number for one entry: a single measurement with its interval, or the mean over the
    draws of an ensemble size with their range."""

    value: float
    #: The 95% interval of a single measurement; None for a mean over several draws.
    interval: Metric | None
    n: int
    draws: int = 1
    low: float = 0.0
    high: float = 0.0
    scales: tuple[str, ...] = ()
    failed_checks: tuple[tuple[str, str], ...] = ()
    #: What a reader must know to read it (the sigma an envelope picked, a cascade's running worst case).
    note: str = ""

    @property
    def reduced(self) -> list[str]:
        return [s for s in self.scales if s != "full"]


@dataclass(frozen=True)
class PaperEntry:
    #: The paper's number in percent; None where its table has none.
    paper: float | None
    ours: Ours | None
    #: Why the matrix has no number for it (not computed yet, or the entry names several).
    missing: str = ""

    @property
    def difference(self) -> float | None:
        """Ours minus the paper's, in percentage points."""
        if self.paper is None or self.ours is None:
            return None
        return 100 * self.ours.value - self.paper

    @property
    def within(self) -> bool | None:
        """Whether the paper's number lies in our 95% interval (None: no interval to judge by)."""
        if self.paper is None or self.ours is None or self.ours.interval is None:
            return None
        low, high = self.ours.interval.low, self.ours.interval.high
        return 100 * low - _CLOSE <= self.paper <= 100 * high + _CLOSE


@dataclass
class PaperTableView:
    anchor: str
    title: str
    source: str
    columns: list[str]
    #: (group label or None, number of adjacent columns it spans); empty when no column has a group.
    groups: list[tuple[str | None, int]]
    rows: list[tuple[str, list[PaperEntry]]]
    notes: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class PaperSection:
    source: str
    tables: list[PaperTableView]
    #: Why the block could not be read (a store written by a version with another schema); empty when it was.
    problem: str = ""


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_CLOSE, abs_tol=1e-12)


def _same_sigma(wanted: float | None, sigma: float | None) -> bool:
    return wanted is None or (sigma is not None and _close(sigma, wanted))


def _same_guides(wanted: list[str] | None, guides: Sequence[str]) -> bool:
    return wanted is None or sorted(wanted) == sorted(guides)


def _pipeline_matches(entry: PaperSelector, x: CellView | AttackView | CertifiedView) -> bool:
    return x.defense == entry.defense and x.target == entry.target and _same_guides(entry.guides, x.guides)


@dataclass(frozen=True)
class _Where:
    """The threat model an entry names, as the cells carry it: a norm and a radius (None matches any). A
    threat's name is only the matrix's label, and two threats may share a radius and so a cell; a name the
    stored matrix does not describe is matched as a name."""

    norm: str | None
    eps: float | None
    name: str | None = None

    def holds(self, x: CellView | AttackView) -> bool:
        return (
            (self.norm is None or x.norm == self.norm)
            and (self.eps is None or _close(x.eps, self.eps))
            and (self.name is None or x.threat == self.name)
        )


def _where(entry: PaperSelector, view: RunView) -> _Where:
    """The entry's threat (else the matrix's only one) and radius (else the threat's only one)."""
    threats = (view.run.matrix or {}).get("threats") or {}
    name = entry.threat if entry.threat is not None or len(threats) != 1 else next(iter(threats))
    if name is None:
        return _Where(None, entry.eps)
    spec = threats.get(name)
    if not isinstance(spec, dict):
        return _Where(None, entry.eps, name)
    epsilons = spec.get("epsilons") or []
    eps = entry.eps if entry.eps is not None or len(epsilons) != 1 else float(epsilons[0])
    return _Where(str(spec.get("norm")), eps)


def _single(m: Metric, scale: str, failed: tuple[tuple[str, str], ...] = (), note: str = "") -> Ours:
    return Ours(m.value, m, m.n, scales=(scale,), failed_checks=failed, note=note)


def _cells(entry: PaperSelector, view: RunView) -> tuple[list[CellView], str]:
    """The cells an entry names: with ``m``, the draws of that ensemble size; without, the other
    experiments' cells (an ensemble-size draw may share its job with one of those)."""
    metric = entry.measured
    where = _where(entry, view)
    found = {
        (c.job_key, c.guides, c.draw): c
        for c in view.cells
        if c.worst_case
        and _pipeline_matches(entry, c)
        and (c.m == entry.m if entry.m is not None else c.kind != "ensemble-size")
        and where.holds(c)
        and _same_sigma(entry.sigma, c.sigma)
    }
    cells = list(found.values())
    if not cells:
        return [], "not computed"
    pipelines = {(c.guides, c.draw) for c in cells}
    if entry.m is None and len(pipelines) > 1:
        sets = ", ".join(sorted({"+".join(g) or "-" for g, _ in pipelines}))
        return [], f"several guide sets match ({sets}); give guides"
    if metric == "robust" and len({(c.norm, round(c.eps, 9)) for c in cells}) > 1:
        return [], "several radii match; give threat and eps"
    if entry.m is not None:
        # One cell per draw: the first radius of each (a robust entry has pinned one above).
        per_draw = {(c.guides, c.draw): c for c in sorted(cells, key=lambda c: (c.eps, c.threat))}
        return list(per_draw.values()), ""
    return [cells[0]], ""


def _from_cells(entry: PaperSelector, view: RunView) -> tuple[Ours | None, str]:
    cells, missing = _cells(entry, view)
    if not cells:
        return None, missing
    robust = entry.measured == "robust"
    metrics = [c.robust if robust else c.clean for c in cells]
    scales = tuple(dict.fromkeys(c.scale for c in cells))
    failed = tuple(dict.fromkeys(f for c in cells for f in c.failed_checks)) if robust else ()
    if len(cells) == 1:
        return Ours(metrics[0].value, metrics[0], metrics[0].n, scales=scales, failed_checks=failed), ""
    values = [m.value for m in metrics]
    return (
        Ours(
            sum(values) / len(values),
            None,
            metrics[0].n,
            draws=len(values),
            low=min(values),
            high=max(values),
            scales=scales,
            failed_checks=failed,
        ),
        "",
    )


def _from_attacks(entry: PaperSelector, view: RunView) -> tuple[Ours | None, str]:
    where = _where(entry, view)
    found = {
        a.job_key: a
        for a in view.attacks
        if a.attack == entry.attack and _pipeline_matches(entry, a) and where.holds(a)
    }
    if not found:
        return None, "not computed"
    if len(found) > 1:
        return None, "several runs of this attack match; give guides, threat and eps"
    a = next(iter(found.values()))
    note = "worst case of the cascade up to this attack" if a.cascade else ""
    return _single(a.robust, a.scale, note=note), ""


def _from_certificates(entry: PaperSelector, view: RunView) -> tuple[Ours | None, str]:
    assert entry.radius is not None
    radius = entry.radius
    candidates = [
        (v, p)
        for v in view.certified
        if _pipeline_matches(entry, v) and _same_sigma(entry.sigma, v.sigma)
        for p in v.points
        if _close(p.radius, radius)
    ]
    unique = {(v.job_key, v.guides): (v, p) for v, p in candidates}
    if not unique:
        return None, "not certified at this radius"
    if len({v.guides for v, _ in unique.values()}) > 1:
        return None, "several guide sets match; give guides"
    v, p = max(unique.values(), key=lambda vp: (vp[1].accuracy.value, -(vp[0].sigma or 0.0)))
    several = len({v.sigma for v, _ in unique.values()}) > 1
    note = f"best σ = {v.sigma:g}" if several and v.sigma is not None else ""
    if v.normalized:  # the paper's radius is likely in the noise's own units: the audit reads both
        pixels = "our radius is in pixels, the noise after normalization: see the radius audit"
        note = f"{note}; {pixels}" if note else pixels
    return _single(p.accuracy, v.scale, v.failed_checks, note), ""


def ours(entry: PaperSelector, view: RunView) -> tuple[Ours | None, str]:
    """The matrix's number for one entry of a paper's table, or why there is none."""
    if entry.defense is None or entry.target is None:
        return None, "names no defense and target"
    if entry.measured == "certified":
        if entry.radius is None:
            return None, "a certified number needs a radius"
        return _from_certificates(entry, view)
    if entry.attack is not None:
        return _from_attacks(entry, view)
    return _from_cells(entry, view)


def _groups(table: PaperTable) -> list[tuple[str | None, int]]:
    if all(c.group is None for c in table.columns):
        return []
    spans: list[tuple[str | None, int]] = []
    for c in table.columns:
        if spans and spans[-1][0] == c.group and c.group is not None:
            spans[-1] = (c.group, spans[-1][1] + 1)
        else:
            spans.append((c.group, 1))
    return spans


def paper_section(view: RunView) -> PaperSection | None:
    """The tables of the ``paper:`` block of the matrix the page's run ran, or None when it has none."""
    raw = (view.run.matrix or {}).get("paper")
    if raw is None:
        return None
    try:
        paper = PaperConfig.model_validate(raw)
    except ValidationError as exc:
        problem = f"the matrix's paper block could not be read ({exc.error_count()} problem(s))"
        return PaperSection("", [], problem)
    tables = []
    for i, table in enumerate(paper.tables, start=1):
        rows = []
        for j, row in enumerate(table.rows):
            entries = []
            for k in range(len(table.columns)):
                mine, missing = ours(table.selector(j, k), view)
                entries.append(PaperEntry(table.numbers[j][k], mine, missing))
            rows.append((row.label, entries))
        tables.append(
            PaperTableView(
                anchor=f"paper-{i}",
                title=table.title,
                source=table.source or paper.source,
                columns=[c.label for c in table.columns],
                groups=_groups(table),
                rows=rows,
            )
        )
    return PaperSection(paper.source, tables)
