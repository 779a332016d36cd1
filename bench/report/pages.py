"""What each report page shows, computed from the store's views: one transferability table per matrix and
threat model (every defense and guide set against every target, so native and transferred numbers of a
front-end sit on one row), accuracy-vs-m tables for ensemble-size experiments, certified-accuracy-vs-radius
tables for smoothed pipelines, every stored row no table knows, and the run(s) that computed a page's numbers.
Templates only lay these out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.artifacts import UPSTREAM_SHA256
from bench.report.data import (
    AttackView,
    CellView,
    CertifiedPoint,
    CertifiedView,
    CorruptionView,
    MatrixKey,
    OtherView,
    RunShare,
    RunView,
)
from bench.report.format import relation_label, row_label, scale_note
from bench.storage.models import Run

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_SLUG = 80
_HASH_CHARS = 10
#: What each relation tag means, in the order the legend lists them.
_RELATION_NOTES = {
    "native": "the target guided the front-end's training.",
    "cross-model": "the target is another classifier of the guides' dataset, unseen in training.",
    "cross-dataset": "the target classifies another dataset than the guides do.",
    "no-guides": "the front-end trains without guides, so no target is native or transferred.",
    "undefended": "no front-end: the target classifier alone, the baseline of its column.",
}
_KIND_BLURBS = {
    "native": "Front-ends evaluated on the classifiers that guided their training.",
    "cross-model": "Front-ends trained with one set of guides, evaluated unchanged on other classifiers of "
    "the same dataset.",
    "cross-dataset": "Front-ends trained with guides of one dataset, applied unchanged before classifiers of "
    "another.",
    "ensemble-size": "Front-ends trained with m guides drawn from a pool, evaluated on held-out targets.",
}
#: Radii closer than this are one column (they are stored as floats computed from configs).
_RADIUS_DIGITS = 9


# -- file names ----------------------------------------------------------------------------------------------
def matrix_file_name(key: MatrixKey, digits: int | None = None) -> str:
    """``matrix-<name>-<hash of name and path>.html``: plain, and the same on every render of the matrix.

    Two matrix files may share a name, so the name alone would let one page overwrite the other; the hash
    depends on nothing but the matrix itself, so links into the report survive re-renders and new matrices.
    """
    slug = _UNSAFE.sub("_", key.name).strip("._-")[:_MAX_SLUG] or "matrix"
    digest = hashlib.sha256(f"{key.name}\0{key.path}".encode()).hexdigest()
    return f"matrix-{slug}-{digest[: digits or _HASH_CHARS]}.html"


def matrix_file_names(keys: Iterable[MatrixKey]) -> dict[MatrixKey, str]:
    """A distinct file name per matrix, even on case-folding disks; a (vanishingly rare) clash of short
    hashes falls back to the full hash rather than letting two matrices share a page."""
    out: dict[MatrixKey, str] = {}
    taken: set[str] = set()
    for key in sorted(set(keys)):
        name = matrix_file_name(key)
        if name.lower() in taken:
            name = matrix_file_name(key, digits=64)
        taken.add(name.lower())
        out[key] = name
    return out


# -- page models ---------------------------------------------------------------------------------------------
@dataclass
class TransferRow:
    label: str
    cells: list[CellView | None]


@dataclass(frozen=True)
class Column:
    target: str
    dataset: str


@dataclass
class TransferTable:
    """Every (defense, guide set) of a matrix against every target it met, under one threat model.

    One row holds a front-end's native, cross-model and cross-dataset numbers side by side, and the
    undefended row gives each column its baseline; a blank cell is a combination the matrix never evaluated.
    Cells of different norms, radii, attack sets or guide datasets are not comparable, so those split tables.
    """

    anchor: str
    norm: str
    eps: float
    threats: list[str]
    #: What the robust numbers are the worst case over (:attr:`CellView.evaluated_with`).
    evaluated_with: str
    guide_dataset: str
    columns: list[Column]
    rows: list[TransferRow]
    notes: list[tuple[int, str]]

    @property
    def dataset_spans(self) -> list[tuple[str, int]]:
        """(dataset, number of target columns) in column order, for a header over cross-dataset targets."""
        spans: list[tuple[str, int]] = []
        for col in self.columns:
            if spans and spans[-1][0] == col.dataset:
                spans[-1] = (col.dataset, spans[-1][1] + 1)
            else:
                spans.append((col.dataset, 1))
        return spans

    @property
    def legend(self) -> list[tuple[str, str, str]]:
        """(css relation, shown label, meaning) of each relation the table's cells carry."""
        seen = {relation_label(c): c.relation for r in self.rows for c in r.cells if c is not None}
        return [(seen[label], label, note) for label, note in _RELATION_NOTES.items() if label in seen]


@dataclass(frozen=True)
class SizePoint:
    """One target at one ensemble size: several draws of guide sets are summarized, not cherry-picked."""

    draws: tuple[CellView, ...]

    @property
    def mean(self) -> float:
        return sum(c.robust.value for c in self.draws) / len(self.draws)

    @property
    def low(self) -> float:
        return min(c.robust.value for c in self.draws)

    @property
    def high(self) -> float:
        return max(c.robust.value for c in self.draws)

    @property
    def n(self) -> str:
        """Examples per draw; draws evaluated on different numbers of examples say so."""
        return "/".join(str(n) for n in dict.fromkeys(c.robust.n for c in self.draws))

    @property
    def failed_checks(self) -> tuple[tuple[str, str], ...]:
        return tuple(dict.fromkeys(f for c in self.draws for f in c.failed_checks))

    @property
    def scales(self) -> list[str]:
        return list(dict.fromkeys(c.scale for c in self.draws if c.reduced))

    @property
    def costs(self) -> list[int | None]:
        return list(dict.fromkeys(c.cost_per_prediction for c in self.draws))

    @property
    def retrains_classifier(self) -> bool:
        return any(c.retrains_classifier for c in self.draws)


@dataclass
class SizeTable:
    defense: str
    sizes: list[int]
    rows: list[tuple[str, list[SizePoint | None]]]


@dataclass
class SizeBlock:
    """One threat model of one ensemble-size experiment: robust accuracy against m, per defense."""

    threats: list[str]
    norm: str
    eps: float
    evaluated_with: str
    tables: list[SizeTable]
    notes: list[tuple[int, str]]


@dataclass
class SizeSection:
    index: int
    blocks: list[SizeBlock]
    cells: list[CellView]

    @property
    def anchor(self) -> str:
        return f"sizes-{self.index}"


@dataclass(frozen=True)
class CertifiedRow:
    """One pipeline at one sigma: its certified accuracy at each radius column of the table (None: not
    certified at that radius)."""

    view: CertifiedView
    points: list[CertifiedPoint | None]


@dataclass(frozen=True)
class EnvelopePoint:
    """The best certified accuracy over sigma at one radius, and the sigma row that achieved it."""

    point: CertifiedPoint
    row: CertifiedView


@dataclass(frozen=True)
class CertifiedGroup:
    """A pipeline's certified rows, one per sigma (smallest first), and the envelope over them (Salman et
    al. 2020, Table 2, report the best sigma per radius). With a single sigma there is nothing to choose
    from, so no envelope."""

    defense: str
    guides: tuple[str, ...]
    target: str
    rows: list[CertifiedRow]
    envelope: list[EnvelopePoint | None] | None

    @property
    def retrains_classifier(self) -> bool:
        return any(r.view.retrains_classifier for r in self.rows)

    @property
    def sigmas(self) -> list[float | None]:
        return [r.view.sigma for r in self.rows]


@dataclass
class CertifiedTable:
    """Certified accuracy against l2 radius (in [0,1] pixel space), smoothed pipelines of one dataset."""

    anchor: str
    dataset: str
    radii: list[float]
    groups: list[CertifiedGroup]
    notes: list[tuple[int, str]]

    @property
    def normalized(self) -> bool:
        """Some row's noise lives after normalization, so its cells also give the radius in that space."""
        return any(r.view.normalized for g in self.groups for r in g.rows)

    @property
    def has_envelope(self) -> bool:
        return any(g.envelope is not None for g in self.groups)


@dataclass(frozen=True)
class ExperimentNote:
    """What one experiment of the matrix evaluates, and where on the page its numbers are."""

    index: int
    kind: str
    blurb: str
    rows: list[str]
    targets: list[str]
    anchor: str


@dataclass(frozen=True)
class AttackRow:
    attack: AttackView
    #: The checks that found this attack's own number unreliable (dead gradients, say).
    unreliable: tuple[str, ...]


@dataclass(frozen=True)
class AttackGroup:
    """One cell's attacks for the per-attack table, in the order they ran: what each ran on and broke."""

    experiment: int
    threat: str
    norm: str
    eps: float
    defense: str
    guides: tuple[str, ...]
    target: str
    #: None while the cell itself has not been computed.
    cell: CellView | None
    rows: list[AttackRow]


@dataclass(frozen=True)
class ClassifierCard:
    label: str
    arch: str
    dataset: str
    seed: str
    origin: str
    #: The mean/std in front of the network and where they came from (matrix, weights file, model source).
    normalization: str
    test_accuracy: float | None
    test_n: int | None
    wall_s: float | None


@dataclass(frozen=True)
class FrontendCard:
    label: str
    kind: str
    guides: str
    seed: str
    params: str
    metrics: str
    wall_s: float | None


@dataclass(frozen=True)
class CorruptionRow:
    """One pipeline's mean accuracy over the corruptions at each severity (mCA per severity)."""

    label: str
    target: str
    clean: float
    by_severity: list[float | None]
    mean: float
    n: int
    corruptions: int
    costs: list[int | None]
    retrains_classifier: bool


@dataclass
class MatrixPage:
    key: MatrixKey
    file_name: str
    #: The run the page is built from: the matrix's latest finished run, which may have computed nothing.
    run: Run
    #: The runs that computed the page's numbers, and how much of the shown run was found already stored.
    computed: list[RunShare]
    linked: int
    skipped: int
    experiments: list[ExperimentNote]
    tables: list[TransferTable]
    size_sections: list[SizeSection]
    attacks: list[AttackGroup]
    classifiers: list[ClassifierCard]
    frontends: list[FrontendCard]
    corruption_rows: list[CorruptionRow] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    corruption_details: list[CorruptionView] = field(default_factory=list)
    certified_tables: list[CertifiedTable] = field(default_factory=list)
    #: Rows no table of the page knows, as stored.
    others: list[OtherView] = field(default_factory=list)
    #: The footnotes of the table of other rows.
    other_notes: list[tuple[int, str]] = field(default_factory=list)
    #: Scale string -> its footnote number, shared by every table of the page.
    note_of: dict[str, int] = field(default_factory=dict)
    #: The footnotes of the per-attack table.
    attack_notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.key.name


def numbered(scales: Iterable[str], note_of: dict[str, int]) -> list[tuple[int, str]]:
    for s in scales:
        note_of.setdefault(s, len(note_of) + 1)
    return sorted({(note_of[s], scale_note(s)) for s in scales})


def _threat_groups(cells: Iterable[CellView], *extra: str) -> list[list[CellView]]:
    """Cells split by what makes their numbers comparable (norm, radius, attack set, plus ``extra`` fields),
    in a fixed order, so tables and their anchors come out the same on every render."""
    groups: dict[tuple[Any, ...], list[CellView]] = {}
    for c in cells:
        key = (c.norm, c.eps, c.evaluated_with, *(getattr(c, name) for name in extra))
        groups.setdefault(key, []).append(c)
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class TableOrder:
    """One order of rows and target columns for every transferability table of a page, whatever order its
    cells' jobs were recorded in (concurrent runs record them in any): by experiment, then first seen."""

    rows: dict[tuple[str, tuple[str, ...]], int]
    targets: dict[str, int]

    @classmethod
    def of(cls, cells: Iterable[CellView]) -> TableOrder:
        ordered = sorted(cells, key=lambda c: c.experiment)
        rows = dict.fromkeys((c.defense, c.guides) for c in ordered)
        targets = dict.fromkeys(c.target for c in ordered)
        return cls({k: i for i, k in enumerate(rows)}, {t: i for i, t in enumerate(targets)})


def _transfer_table(
    anchor: str, cells: list[CellView], note_of: dict[str, int], order: TableOrder
) -> TransferTable:
    cells = sorted(cells, key=lambda c: (order.rows[(c.defense, c.guides)], order.targets[c.target]))
    by_target = sorted(
        dict.fromkeys(Column(c.target, c.dataset) for c in cells), key=lambda col: order.targets[col.target]
    )
    datasets = list(dict.fromkeys(col.dataset for col in by_target))
    columns = sorted(by_target, key=lambda col: datasets.index(col.dataset))
    by_row: dict[tuple[str, tuple[str, ...]], dict[str, CellView]] = {}
    for c in cells:
        by_row.setdefault((c.defense, c.guides), {}).setdefault(c.target, c)
    rows = [
        TransferRow(row_label(defense, guides), [row.get(col.target) for col in columns])
        for (defense, guides), row in by_row.items()
    ]
    first = cells[0]
    in_reading_order = (c.scale for r in rows for c in r.cells if c is not None and c.reduced)
    return TransferTable(
        anchor=anchor,
        norm=first.norm,
        eps=first.eps,
        threats=list(dict.fromkeys(c.threat for c in cells)),
        evaluated_with=first.evaluated_with,
        guide_dataset=first.train_dataset,
        columns=columns,
        rows=rows,
        notes=numbered(dict.fromkeys(in_reading_order), note_of),
    )


def _size_tables(cells: list[CellView]) -> list[SizeTable]:
    tables = []
    for defense in dict.fromkeys(c.defense for c in cells):
        mine = [c for c in cells if c.defense == defense and c.m is not None]
        if not mine:
            continue
        sizes = sorted({c.m for c in mine if c.m is not None})
        rows: list[tuple[str, list[SizePoint | None]]] = []
        for target in dict.fromkeys(c.target for c in mine):
            points: list[SizePoint | None] = []
            for m in sizes:
                draws = {c.draw: c for c in mine if c.target == target and c.m == m}
                points.append(SizePoint(tuple(draws.values())) if draws else None)
            rows.append((target, points))
        tables.append(SizeTable(defense, sizes, rows))
    return tables


def _size_section(index: int, cells: list[CellView], note_of: dict[str, int]) -> SizeSection:
    blocks = []
    for group in _threat_groups(cells):
        first = group[0]
        blocks.append(
            SizeBlock(
                threats=list(dict.fromkeys(c.threat for c in group)),
                norm=first.norm,
                eps=first.eps,
                evaluated_with=first.evaluated_with,
                tables=_size_tables(group),
                notes=numbered(dict.fromkeys(c.scale for c in group if c.reduced), note_of),
            )
        )
    return SizeSection(index, blocks, cells)


def _attack_groups(attacks: list[AttackView], cells: list[CellView]) -> list[AttackGroup]:
    """The attack jobs grouped by the cell they belong to, each group in the order its attacks ran."""
    def place(x: AttackView | CellView) -> tuple[int, str, float, str, tuple[str, ...], str]:
        return (x.experiment, x.threat, x.eps, x.defense, x.guides, x.target)

    by_place = {place(c): c for c in cells}
    grouped: dict[tuple[int, str, float, str, tuple[str, ...], str], list[AttackView]] = {}
    for a in attacks:
        grouped.setdefault(place(a), []).append(a)
    groups = []
    for where in sorted(grouped):
        cell = by_place.get(where)
        order = list(cell.attacks) if cell is not None else []
        mine = sorted(
            grouped[where],
            key=lambda a: (order.index(a.attack) if a.attack in order else len(order), a.attack),
        )
        unreliable = dict(cell.unreliable_attacks) if cell is not None else {}
        first = mine[0]
        groups.append(
            AttackGroup(
                experiment=first.experiment,
                threat=first.threat,
                norm=first.norm,
                eps=first.eps,
                defense=first.defense,
                guides=first.guides,
                target=first.target,
                cell=cell,
                rows=[AttackRow(a, tuple(unreliable.get(a.attack, ()))) for a in mine],
            )
        )
    return groups


def _experiment_note(index: int, cells: list[CellView] | list[CertifiedView], anchor: str) -> ExperimentNote:
    kind = cells[0].kind
    return ExperimentNote(
        index=index,
        kind=kind,
        blurb=_KIND_BLURBS.get(kind, ""),
        rows=list(dict.fromkeys(row_label(c.defense, c.guides) for c in cells)),
        targets=list(dict.fromkeys(c.target for c in cells)),
        anchor=anchor,
    )


def _radius(value: float) -> float:
    return round(value, _RADIUS_DIGITS)


def _sigma_order(view: CertifiedView) -> tuple[bool, float, str, str]:
    return (view.sigma is None, view.sigma or 0.0, view.noise_space, view.job_key)


def _envelope(rows: list[CertifiedRow], radii: list[float]) -> list[EnvelopePoint | None]:
    """At each radius, the sigma row with the highest certified accuracy (the smallest sigma on a tie)."""
    out: list[EnvelopePoint | None] = []
    for i in range(len(radii)):
        best: EnvelopePoint | None = None
        for row in rows:
            point = row.points[i]
            if point is not None and (best is None or point.accuracy.value > best.point.accuracy.value):
                best = EnvelopePoint(point, row.view)
        out.append(best)
    return out


def _certified_tables(views: list[CertifiedView], note_of: dict[str, int]) -> list[CertifiedTable]:
    """One table per dataset: a block of sigma rows per (defense, guides, target), each block closed by its
    envelope over sigma; a certify job used by several experiments shows once."""
    unique = {(v.job_key, v.defense, v.guides, v.target): v for v in views}
    tables = []
    for i, dataset in enumerate(sorted({v.dataset for v in unique.values()}), start=1):
        mine = [v for v in unique.values() if v.dataset == dataset]
        radii = sorted({_radius(p.radius) for v in mine for p in v.points})
        pipelines: dict[tuple[str, tuple[str, ...], str], list[CertifiedView]] = {}
        for v in sorted(mine, key=lambda v: (v.defense, v.guides, v.target, *_sigma_order(v))):
            pipelines.setdefault((v.defense, v.guides, v.target), []).append(v)
        groups = []
        for (defense, guides, target), group in pipelines.items():
            rows = []
            for v in group:
                at = {_radius(p.radius): p for p in v.points}
                rows.append(CertifiedRow(v, [at.get(r) for r in radii]))
            several = len({v.sigma for v in group}) > 1
            groups.append(
                CertifiedGroup(defense, guides, target, rows, _envelope(rows, radii) if several else None)
            )
        scales = (r.view.scale for g in groups for r in g.rows if r.view.reduced)
        tables.append(
            CertifiedTable(f"certified-{i}", dataset, radii, groups, numbered(dict.fromkeys(scales), note_of))
        )
    return tables


def _classifier_cards(view: RunView) -> list[ClassifierCard]:
    cards: dict[str, ClassifierCard] = {}
    for c in view.classifiers:
        config, metrics = c["config"], c["metrics"]
        acc, n = metrics.get("test_accuracy"), metrics.get("test_n")
        cards.setdefault(
            str(c["label"]),
            ClassifierCard(
                label=str(c["label"]),
                arch=str(config.get("arch", "")),
                dataset=str(config.get("dataset", "")),
                seed=str(config.get("seed", "")),
                origin=_origin(config),
                normalization=_normalization(config.get("normalization"), metrics.get("normalization_from")),
                test_accuracy=float(acc) if isinstance(acc, int | float) else None,
                test_n=int(n) if isinstance(n, int | float) else None,
                wall_s=c["wall_s"],
            ),
        )
    return list(cards.values())


def _origin(config: dict[str, Any]) -> str:
    """Where a classifier's weights come from; a fine-tuned one names the file's content it started from."""
    origin = str(config.get("origin", ""))
    init = config.get("init_sha256")
    return f"{origin}, fine-tuned from weights {str(init)[:12]}" if init else origin


def _normalization(norm: Any, came_from: Any) -> str:
    """A classifier's normalization as a reader checks it against the weights' documentation; stores
    written before its source was recorded show the values alone."""
    if came_from == "model source":
        return "the model's own (model source)"
    if not isinstance(norm, dict):
        return "–"
    mean, std = list(norm.get("mean", [])), list(norm.get("std", []))
    values = "none" if set(mean) <= {0} and set(std) <= {1} else f"mean {_floats(mean)}, std {_floats(std)}"
    return f"{values} ({came_from})" if came_from else values


def _floats(values: list[Any]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _frontend_cards(view: RunView) -> list[FrontendCard]:
    cards: dict[tuple[str, tuple[str, ...]], FrontendCard] = {}
    for f in view.frontends:
        config, guides = f["config"], tuple(str(g) for g in f["guides"])
        metrics = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in f["metrics"].items()
            if k != UPSTREAM_SHA256  # bookkeeping for reruns, not a property of the front-end
        )
        cards.setdefault(
            (str(f["label"]), guides),
            FrontendCard(
                label=str(f["label"]),
                kind=str(config.get("kind", "")),
                guides="+".join(guides) or "–",
                seed=str(config.get("seed", "")),
                params=json.dumps(config.get("params", {}), sort_keys=True),
                metrics=metrics or "–",
                wall_s=f["wall_s"],
            ),
        )
    return list(cards.values())


def _corruption_rows(views: list[CorruptionView]) -> tuple[list[CorruptionRow], list[int]]:
    severities = sorted({v.severity for v in views})
    groups: dict[tuple[str, tuple[str, ...], str], list[CorruptionView]] = {}
    for v in views:
        groups.setdefault((v.defense, v.guides, v.target), []).append(v)
    rows = []
    for (defense, guides, target), mine in groups.items():
        per = [[v.corrupted.value for v in mine if v.severity == s] for s in severities]
        rows.append(
            CorruptionRow(
                row_label(defense, guides),
                target,
                mine[0].clean.value,
                [sum(p) / len(p) if p else None for p in per],
                sum(v.corrupted.value for v in mine) / len(mine),
                mine[0].corrupted.n,
                len({v.corruption for v in mine}),
                list(dict.fromkeys(v.cost_per_prediction for v in mine)),
                any(v.retrains_classifier for v in mine),
            )
        )
    return rows, severities


def matrix_page(key: MatrixKey, view: RunView, file_name: str) -> MatrixPage:
    """The page of one matrix: one transferability table per threat model over all its non-ensemble-size
    experiments, and an accuracy-vs-m section per ensemble-size experiment."""
    page = MatrixPage(
        key=key,
        file_name=file_name,
        run=view.run,
        computed=view.computed,
        linked=view.linked,
        skipped=view.skipped,
        experiments=[],
        tables=[],
        size_sections=[],
        attacks=[],
        classifiers=_classifier_cards(view),
        frontends=_frontend_cards(view),
    )
    worst = [c for c in view.cells if c.worst_case]
    transfer = [c for c in worst if c.kind != "ensemble-size"]
    groups = _threat_groups(transfer, "train_dataset")
    order = TableOrder.of(transfer)
    page.tables = [
        _transfer_table(f"transfer-{i}", g, page.note_of, order) for i, g in enumerate(groups, start=1)
    ]
    page.certified_tables = _certified_tables(view.certified, page.note_of)
    for index in sorted({c.experiment for c in worst} | {v.experiment for v in view.certified}):
        mine = [c for c in worst if c.experiment == index]
        certified = [v for v in view.certified if v.experiment == index]
        if mine and mine[0].kind == "ensemble-size":
            section = _size_section(index, mine, page.note_of)
            page.size_sections.append(section)
            page.experiments.append(_experiment_note(index, mine, section.anchor))
        elif mine:
            page.experiments.append(_experiment_note(index, mine, "transfer"))
        else:
            page.experiments.append(_experiment_note(index, certified, "certified"))
    page.attacks = _attack_groups(view.attacks, worst)
    scales = (r.attack.scale for g in page.attacks for r in g.rows if r.attack.reduced)
    page.attack_notes = numbered(dict.fromkeys(scales), page.note_of)
    unique = {(v.defense, v.guides, v.target, v.corruption, v.severity): v for v in view.corruptions}
    page.corruption_rows, page.severities = _corruption_rows(list(unique.values()))
    page.corruption_details = sorted(
        unique.values(), key=lambda v: (v.defense, v.guides, v.target, v.corruption, v.severity)
    )
    numbered(dict.fromkeys(v.scale for v in unique.values() if v.scale != "full"), page.note_of)
    page.others = sorted(
        view.others, key=lambda o: (o.metric, o.defense, o.guides, o.target, o.attack, o.eps, o.job_key)
    )
    page.other_notes = numbered(dict.fromkeys(o.scale for o in page.others if o.reduced), page.note_of)
    return page
