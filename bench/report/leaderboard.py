"""The leaderboard: one table per (dataset, norm, radius), so only numbers measured under the same threat are
ranked against each other.

A row is one pipeline (defense, guide set, target) of one matrix: its clean and robust accuracy from the
worst-case cell at that radius, its certified accuracy where a smoothed version of it was certified at that l2
radius, what one prediction costs, what training its front-end cost and on what device, whether its number
survived the soundness checks, and at what scale it was measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bench.report.data import CellView, CertifiedPoint, CertifiedView, Metric, RunView
from bench.report.format import relation_name
from bench.report.pages import MatrixPage, numbered
from bench.storage.models import Run

#: Radii closer than this are one leaderboard (they are stored as floats computed from configs).
_DIGITS = 9


@dataclass(frozen=True)
class Training:
    """What training the pipeline's front-end cost: its job's wall time, and the device of the run that
    computed it (None where the store does not say)."""

    wall_s: float | None
    device: str | None


@dataclass
class BoardRow:
    matrix: str
    #: The matrix page and the table on it that show the row's numbers.
    link: str
    #: The run that computed the row's numbers, and where the page gives its provenance.
    run_id: int | None
    run_link: str | None
    defense: str
    defense_kind: str
    guides: tuple[str, ...]
    target: str
    sigma: float | None
    relation: str
    threats: list[str]
    clean: Metric | None
    robust: Metric | None
    certified: Metric | None
    #: What the robust number is the worst case over (:attr:`CellView.evaluated_with`).
    evaluated_with: str
    costs: list[int | None]
    training: Training | None
    failed_checks: tuple[tuple[str, str], ...]
    passed_checks: tuple[tuple[str, str], ...]
    scales: list[str]
    retrains_classifier: bool
    rank: int = 0

    @property
    def soundness(self) -> str:
        if self.failed_checks:
            return "unreliable"
        return "reliable" if self.passed_checks else "unchecked"

    @property
    def reduced(self) -> list[str]:
        return [s for s in self.scales if s != "full"]

    @property
    def n(self) -> int:
        shown = [m for m in (self.robust, self.certified, self.clean) if m is not None]
        return shown[0].n if shown else 0

    @property
    def guide_label(self) -> str:
        return "+".join(self.guides) if self.guides else "-"

    @property
    def score(self) -> float | None:
        """What the row is ranked by: robust accuracy, or certified accuracy where it has no attack result."""
        best = self.robust or self.certified
        return best.value if best is not None else None


@dataclass
class Board:
    anchor: str
    dataset: str
    norm: str
    eps: float
    rows: list[BoardRow]
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def certified(self) -> bool:
        return any(r.certified is not None for r in self.rows)

    @property
    def attacked(self) -> bool:
        return any(r.robust is not None for r in self.rows)


_Place = tuple[str, str, float]
#: (page, defense, guides, target, sigma, what the number is over): attack sets or a certificate.
_Pipeline = tuple[str, str, tuple[str, ...], str, float | None, str]


def _training(view: RunView, runs: Mapping[int, Run]) -> dict[tuple[str, tuple[str, ...]], Training]:
    out: dict[tuple[str, tuple[str, ...]], Training] = {}
    for f in view.frontends:
        run = runs.get(f["run_id"]) if f.get("run_id") is not None else None
        key = (str(f["label"]), tuple(str(g) for g in f["guides"]))
        out.setdefault(key, Training(f["wall_s"], run.device if run is not None else None))
    return out


def _placed_cells(page: MatrixPage) -> list[tuple[CellView, str, list[str]]]:
    """Each worst-case cell once, with the table of the page that shows it (a cell shared by several
    experiments links to its transferability table rather than an m table) and every threat name under
    which the page shows it (two threats of the matrix may share a radius, and then a cell)."""
    placed = [(c, t.anchor) for t in page.tables for row in t.rows for c in row.cells if c is not None]
    placed += [(c, section.anchor) for section in page.size_sections for c in section.cells]
    seen: dict[tuple[str, str, tuple[str, ...], str], tuple[CellView, str, list[str]]] = {}
    for c, anchor in placed:
        _, _, threats = seen.setdefault((c.job_key, c.defense, c.guides, c.target), (c, anchor, []))
        if c.threat not in threats:
            threats.append(c.threat)
    return list(seen.values())


def _certified_rows(
    page: MatrixPage, views: Iterable[CertifiedView]
) -> list[tuple[CertifiedView, CertifiedPoint, str]]:
    """Each certify job's points at a radius above 0 (at 0 nothing is certified against an attack), with the
    anchor of the page's certified table for its dataset."""
    anchors = {t.dataset: t.anchor for t in page.certified_tables}
    unique = {(v.job_key, v.defense, v.guides, v.target): v for v in views}
    return [
        (v, p, anchors.get(v.dataset, "certified"))
        for v in unique.values()
        for p in v.points
        if p.radius > 0
    ]


def leaderboards(
    pages: Iterable[tuple[MatrixPage, RunView]], runs: Mapping[int, Run]
) -> tuple[list[Board], dict[str, int]]:
    """The leaderboards, in a fixed order, and the scale footnotes they share (scale -> note number)."""
    boards: dict[_Place, dict[_Pipeline, BoardRow]] = {}
    for page, view in pages:
        training = _training(view, runs)

        def row_for(place: _Place, pipeline: _Pipeline, make: BoardRow) -> BoardRow:
            return boards.setdefault(place, {}).setdefault(pipeline, make)

        for c, anchor, threats in _placed_cells(page):
            place = (c.dataset, c.norm, round(c.eps, _DIGITS))
            pipeline = (page.file_name, c.defense, c.guides, c.target, c.sigma, c.evaluated_with)
            row_for(
                place,
                pipeline,
                BoardRow(
                    matrix=page.name,
                    link=f"{page.file_name}#{anchor}",
                    run_id=c.computed_in,
                    run_link=f"{page.file_name}#run-{c.computed_in}" if c.computed_in is not None else None,
                    defense=c.defense,
                    defense_kind=c.defense_kind,
                    guides=c.guides,
                    target=c.target,
                    sigma=c.sigma,
                    relation=relation_name(c.relation, c.defense_kind),
                    threats=threats,
                    clean=c.clean,
                    robust=c.robust,
                    certified=None,
                    evaluated_with=c.evaluated_with,
                    costs=[c.cost_per_prediction],
                    training=training.get((c.defense, c.guides)) or training.get((c.defense, ())),
                    failed_checks=c.failed_checks,
                    passed_checks=c.passed_checks,
                    scales=[c.scale],
                    retrains_classifier=c.retrains_classifier,
                ),
            )
        for v, point, anchor in _certified_rows(page, view.certified):
            place = (v.dataset, "l2", round(point.radius, _DIGITS))
            same = (page.file_name, v.defense, v.guides, v.target, v.sigma)
            attacked = [
                r
                for key, r in boards.get(place, {}).items()
                if key[:5] == same and key[5] != "certificate" and r.certified is None
            ]
            if attacked:
                _add_certificate(attacked[0], v, point)
                continue
            pipeline = (page.file_name, v.defense, v.guides, v.target, v.sigma, "certificate")
            row_for(
                place,
                pipeline,
                BoardRow(
                    matrix=page.name,
                    link=f"{page.file_name}#{anchor}",
                    run_id=v.computed_in,
                    run_link=f"{page.file_name}#run-{v.computed_in}" if v.computed_in is not None else None,
                    defense=v.defense,
                    defense_kind=v.defense_kind,
                    guides=v.guides,
                    target=v.target,
                    sigma=v.sigma,
                    relation=relation_name(v.relation, v.defense_kind),
                    threats=[],
                    clean=v.smoothed_clean,
                    robust=None,
                    certified=point.accuracy,
                    evaluated_with="",
                    costs=[v.cost_per_prediction],
                    training=training.get((v.defense, v.guides)) or training.get((v.defense, ())),
                    failed_checks=v.failed_checks,
                    passed_checks=v.passed_checks,
                    scales=[v.scale],
                    retrains_classifier=v.retrains_classifier,
                ),
            )
    note_of: dict[str, int] = {}
    out = []
    for i, place in enumerate(sorted(boards), start=1):
        rows = sorted(boards[place].values(), key=_order)
        for rank, row in enumerate(rows, start=1):
            row.rank = rank
        dataset, norm, eps = place
        notes = numbered(dict.fromkeys(s for r in rows for s in r.reduced), note_of)
        out.append(Board(f"board-{i}", dataset, norm, eps, rows, notes))
    return out, note_of


def _add_certificate(row: BoardRow, v: CertifiedView, point: CertifiedPoint) -> None:
    """An attacked pipeline that was also certified at this radius: both numbers on one row."""
    row.certified = point.accuracy
    row.costs = list(dict.fromkeys([*row.costs, v.cost_per_prediction]))
    row.scales = list(dict.fromkeys([*row.scales, v.scale]))
    row.failed_checks = tuple(dict.fromkeys([*row.failed_checks, *v.failed_checks]))
    row.passed_checks = tuple(dict.fromkeys([*row.passed_checks, *v.passed_checks]))
    row.retrains_classifier = row.retrains_classifier or v.retrains_classifier


def _order(row: BoardRow) -> tuple[bool, float, float, str, str, tuple[str, ...], str, float]:
    """Best first, so a board reads right before (or without) any JavaScript; ties in a fixed order."""
    score = row.score
    clean = row.clean.value if row.clean is not None else 0.0
    sigma = row.sigma or 0.0
    return (score is None, -(score or 0.0), -clean, row.matrix, row.defense, row.guides, row.target, sigma)
