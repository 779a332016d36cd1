"""Read-only views of the store for reports and the CLI summary.

A run links to the jobs it covered with the labels its matrix gave them; a cell view joins those labels with
the content-keyed result rows and the cell's soundness flags. Because rows are keyed by content, the run a
page is built from is often not the run that computed its numbers (a resumed or repeated run links stored
jobs as ``skipped``), so every view also records which run last computed each job.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bench.storage import Store
from bench.storage.models import Flag, Job, Result, Run
from bench.uses import ClassifierUse, EvaluationUse, FrontEndUse

#: The metrics of a certify job: one ``certified_accuracy`` row per radius, and two rows at radius 0.
CERTIFIED = "certified_accuracy"
ABSTAIN = "abstain_rate"
SMOOTHED_CLEAN = "smoothed_clean_accuracy"


@dataclass(frozen=True)
class Metric:
    value: float
    low: float
    high: float
    n: int
    successes: int


@dataclass(frozen=True)
class CellView:
    job_key: str
    run_id: int
    matrix: str
    experiment: int
    kind: str
    relation: str
    defense: str
    defense_kind: str
    guides: tuple[str, ...]
    target: str
    arch: str
    dataset: str
    train_dataset: str
    threat: str
    norm: str
    eps: float
    attack: str
    clean: Metric
    robust: Metric
    scale: str
    wall_s: float
    n_forward: int
    n_backward: int
    #: The run that computed this cell's numbers (None when the store does not say).
    computed_in: int | None = None
    #: The attacks whose per-example worst case the robust number is; cells over different sets differ.
    attacks: tuple[str, ...] = ()
    m: int | None = None
    draw: int | None = None
    failed_checks: tuple[tuple[str, str], ...] = ()
    passed_checks: tuple[tuple[str, str], ...] = ()
    #: The standard protocol's version when it chose the attacks; None for a custom attack set.
    standard_protocol: int | None = None
    #: The attacks that ran as a cascade, in order (the rest ran side by side on every example).
    cascade: tuple[str, ...] = ()
    #: Per attack, the checks that found its own number unreliable, even where the worst case survived it.
    unreliable_attacks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Forward passes of the pipeline per prediction; None where the store does not say (not assumed 1).
    cost_per_prediction: int | None = None
    #: The defense or target recipe retrains the classifier, so the pipeline is not model-agnostic.
    retrains_classifier: bool = False
    #: The smoothing sigma of a defense the matrix plans once per sigma; None otherwise.
    sigma: float | None = None

    @property
    def worst_case(self) -> bool:
        return self.attack == "worst-case"

    @property
    def evaluated_with(self) -> str:
        """What the robust number is the worst case over: the standard protocol, or the attacks a matrix
        chose (and the order of those that cascaded); empty where the store does not say."""
        if not self.attacks:
            return ""
        if self.standard_protocol is not None:
            return f"standard protocol v{self.standard_protocol} ({' → '.join(self.attacks)})"
        text = f"custom attack set: {', '.join(self.attacks)}"
        return f"{text} (cascade: {' → '.join(self.cascade)})" if self.cascade else text

    @property
    def reliable(self) -> bool:
        return not self.failed_checks

    @property
    def reduced(self) -> bool:
        return self.scale != "full"

    @property
    def guide_label(self) -> str:
        return "+".join(self.guides) if self.guides else "-"


@dataclass(frozen=True)
class AttackView:
    """One attack job of a cell: how many examples it ran on and how many of those it broke.

    Run side by side, an attack ran on every clean-correct example and ``robust`` is its own number. In a
    cascade it ran only on what the attacks before it left robust, and ``robust`` is the cascade's running
    worst case up to it, not a standalone number.
    """

    job_key: str
    experiment: int
    defense: str
    guides: tuple[str, ...]
    target: str
    threat: str
    norm: str
    eps: float
    attack: str
    clean: Metric
    robust: Metric
    run_on: int
    broke: int
    cascade: bool
    scale: str
    wall_s: float
    n_forward: int
    n_backward: int
    cost_per_prediction: int | None = None
    retrains_classifier: bool = False

    @property
    def reduced(self) -> bool:
        return self.scale != "full"


@dataclass(frozen=True)
class CorruptionView:
    """Accuracy of one pipeline on one common corruption at one severity, beside its clean accuracy."""

    experiment: int
    defense: str
    guides: tuple[str, ...]
    target: str
    corruption: str
    severity: int
    clean: Metric
    corrupted: Metric
    scale: str
    cost_per_prediction: int | None = None
    retrains_classifier: bool = False


@dataclass(frozen=True)
class CertifiedPoint:
    """Certified accuracy at one radius: the share of the n images the smoothed classifier gets right with a
    certified radius of at least ``radius``.

    ``radius`` is an l2 distance in the [0,1] pixel space, like every radius the report prints; ``declared``
    is the same certificate in the space the defense's noise lives in (it differs for normalized-space noise).
    """

    radius: float
    declared: float | None
    accuracy: Metric


@dataclass(frozen=True)
class CertifiedView:
    """One certify job of one pipeline at one noise level: certified accuracy against radius (CERTIFY), with
    the smoothed classifier's clean accuracy and abstention rate, and what the certificate was computed with.
    Parameters a store does not record are None and shown as unknown."""

    job_key: str
    experiment: int
    kind: str
    defense: str
    defense_kind: str
    guides: tuple[str, ...]
    target: str
    dataset: str
    sigma: float | None
    #: ``pixel`` or ``normalized``: where the defense declared its Gaussian noise.
    noise_space: str
    n0: int | None
    #: Noise samples of the estimate (Cohen et al.'s n), not the number of images (each metric's ``n``).
    samples: int | None
    alpha: float | None
    noise_batch: int | None
    preset: str | None
    #: By radius, smallest first.
    points: tuple[CertifiedPoint, ...]
    abstain: Metric | None
    smoothed_clean: Metric | None
    scale: str
    wall_s: float
    cost_per_prediction: int | None
    retrains_classifier: bool
    failed_checks: tuple[tuple[str, str], ...] = ()
    computed_in: int | None = None
    passed_checks: tuple[tuple[str, str], ...] = ()
    #: How the target relates to the front-end's guides (:data:`bench.uses.Relation`).
    relation: str = ""

    @property
    def reduced(self) -> bool:
        return self.scale != "full"

    @property
    def normalized(self) -> bool:
        """The certificate was computed in another space than pixels, so its radii are shown in both."""
        return self.noise_space == "normalized"


@dataclass(frozen=True)
class OtherView:
    """A stored row that no view of this module knows (a metric added after it was written), kept as stored
    so the report shows it rather than dropping it."""

    job_key: str
    job_kind: str
    dataset: str
    defense: str
    guides: tuple[str, ...]
    target: str
    norm: str
    eps: float
    attack: str
    metric: str
    value: Metric
    scale: str
    cost_per_prediction: int | None
    retrains_classifier: bool
    #: The row's ``details`` as sorted JSON; empty when it has none.
    details: str

    @property
    def reduced(self) -> bool:
        return self.scale != "full"


@dataclass(frozen=True)
class RunShare:
    """One run that computed some of the jobs a view shows: the run a page credits for its numbers."""

    run: Run
    #: Linked jobs this run computed (training, attacks, cells, corruptions).
    jobs: int
    #: Of those, worst-case cells: the numbers of the transferability tables.
    cells: int


@dataclass
class RunView:
    run: Run
    cells: list[CellView] = field(default_factory=list)
    attacks: list[AttackView] = field(default_factory=list)
    corruptions: list[CorruptionView] = field(default_factory=list)
    certified: list[CertifiedView] = field(default_factory=list)
    #: Rows of linked jobs that no other view shows.
    others: list[OtherView] = field(default_factory=list)
    classifiers: list[dict[str, Any]] = field(default_factory=list)
    frontends: list[dict[str, Any]] = field(default_factory=list)
    #: Runs that computed the linked jobs, oldest first.
    computed: list[RunShare] = field(default_factory=list)
    #: Jobs this run linked, and how many of them it found already stored instead of computing.
    linked: int = 0
    skipped: int = 0


class MatrixKey(NamedTuple):
    """What identifies a matrix across runs: its name alone is not unique, two files may share it."""

    name: str
    path: str


def matrix_key(run: Run) -> MatrixKey:
    """``./m.yaml`` and ``m.yaml`` are the same file; the path as typed is all the store keeps."""
    return MatrixKey(run.matrix_name, posixpath.normpath(run.matrix_path.replace("\\", "/")))


def _metric(r: Result) -> Metric:
    return Metric(r.value, r.ci_low, r.ci_high, r.n, r.successes)


def _retrains(uses: list[EvaluationUse]) -> bool:
    return any(use.retrains_classifier is True for use in uses)


def run_view(store: Store, run: Run, runs: Mapping[int, Run] | None = None) -> RunView:
    """The jobs ``run`` linked, with their rows; ``runs`` (by id) names the runs that computed them."""
    if runs is None:
        runs = {r.id: r for r in store.runs()}
    links = store.run_jobs(run.id)
    keys = [link.job_key for link in links]
    jobs = {j.key: j for j in store.jobs(keys)}
    results: dict[str, list[Result]] = defaultdict(list)
    for r in store.results_for(keys):
        results[r.job_key].append(r)
    flags: dict[str, list[Flag]] = defaultdict(list)
    for f in store.flags_for(keys):
        flags[f.job_key].append(f)
    view = RunView(run, linked=len(links), skipped=sum(link.skipped for link in links))
    computed_jobs: Counter[int] = Counter()
    computed_cells: Counter[int] = Counter()
    for link in links:
        job = jobs.get(link.job_key)
        uses = link.labels.get("uses", [])
        if job is None:
            continue
        # A job's row names the run that last computed it; its result rows were written in that same step.
        computed_in = job.run_id
        if job.status == "done" and computed_in is not None:
            computed_jobs[computed_in] += 1
            computed_cells[computed_in] += job.kind == "cell"
        job_rows = results.get(job.key, [])
        shown: set[int] = set()
        retrains = False
        if job.kind == "train-classifier":
            _add_classifiers(view, job, [ClassifierUse.model_validate(u) for u in uses])
        elif job.kind == "train-defense":
            _add_frontends(view, job, [FrontEndUse.model_validate(u) for u in uses])
        else:
            evaluations = [EvaluationUse.model_validate(u) for u in uses]
            retrains = _retrains(evaluations)
            shown = _add_evaluations(view, job, job_rows, evaluations, flags.get(job.key, []))
        view.others.extend(_other_view(job, r, retrains) for r in job_rows if r.id not in shown)
    view.computed = [RunShare(runs[i], computed_jobs[i], computed_cells[i]) for i in sorted(computed_jobs)]
    return view


def _add_classifiers(view: RunView, job: Job, uses: list[ClassifierUse]) -> None:
    view.classifiers.extend(
        {
            "label": u.classifier,
            "key": job.key,
            "config": job.config,
            "metrics": job.metrics,
            "wall_s": job.wall_s,
        }
        for u in uses
    )


def _add_frontends(view: RunView, job: Job, uses: list[FrontEndUse]) -> None:
    view.frontends.extend(
        {
            "label": u.defense,
            "guides": u.guides,
            "key": job.key,
            "config": job.config,
            "metrics": job.metrics,
            "wall_s": job.wall_s,
            "run_id": job.run_id,
        }
        for u in uses
    )


def _add_evaluations(
    view: RunView, job: Job, job_rows: list[Result], uses: list[EvaluationUse], flags: list[Flag]
) -> set[int]:
    """Adds the views an evaluation job's rows make; returns the ids of the rows they show."""
    if any(r.metric == CERTIFIED for r in job_rows):
        certified, shown = _certified_views(job, job_rows, uses, flags)
        view.certified.extend(certified)
        return shown
    # Rows of single-valued metrics, by metric; a metric stored twice leaves its other rows to ``others``.
    rows: dict[str, Result] = {}
    for r in job_rows:
        rows.setdefault(r.metric, r)
    retrains = _retrains(uses)
    if "corrupted_accuracy" in rows and "clean_accuracy" in rows:
        clean, corrupted = rows["clean_accuracy"], rows["corrupted_accuracy"]
        view.corruptions.extend(
            CorruptionView(
                use.experiment,
                use.defense,
                tuple(use.guides),
                use.target,
                use.attack,
                int(use.eps),
                _metric(clean),
                _metric(corrupted),
                corrupted.scale,
                corrupted.cost_per_prediction,
                retrains,
            )
            for use in uses
        )
        return {clean.id, corrupted.id} if uses else set()
    if job.kind == "attack":
        attacks, shown = _attack_views(job.key, job.metrics, rows, uses)
        view.attacks.extend(attacks)
        return shown
    if "robust_accuracy" not in rows or "clean_accuracy" not in rows:
        return set()
    robust, clean = rows["robust_accuracy"], rows["clean_accuracy"]
    unreliable = job.metrics.get("unreliable_attacks", {})
    failed = tuple((f.check, f.detail) for f in flags if not f.passed)
    passed = tuple((f.check, f.detail) for f in flags if f.passed)
    for use in uses:
        view.cells.append(
            CellView(
                job_key=job.key,
                run_id=view.run.id,
                matrix=view.run.matrix_name,
                experiment=use.experiment,
                kind=use.kind,
                relation=use.relation,
                defense=use.defense,
                defense_kind=use.defense_kind,
                guides=tuple(use.guides),
                target=use.target,
                arch=use.arch,
                dataset=use.dataset,
                train_dataset=use.train_dataset or use.dataset,
                threat=use.threat,
                norm=use.norm,
                eps=use.eps,
                attack=use.attack,
                clean=_metric(clean),
                robust=_metric(robust),
                scale=robust.scale,
                wall_s=robust.wall_s,
                n_forward=robust.n_forward,
                n_backward=robust.n_backward,
                computed_in=job.run_id,
                attacks=tuple(use.attacks or ()),
                m=use.m,
                draw=use.draw,
                failed_checks=failed,
                passed_checks=passed,
                standard_protocol=use.standard_protocol,
                cascade=tuple(use.cascade or ()),
                unreliable_attacks=tuple((a, tuple(checks)) for a, checks in unreliable.items()),
                cost_per_prediction=robust.cost_per_prediction,
                retrains_classifier=use.retrains_classifier is True,
                sigma=use.sigma,
            )
        )
    return {robust.id, clean.id} if uses else set()


def _attack_views(
    key: str, metrics: dict[str, Any], rows: dict[str, Result], uses: list[EvaluationUse]
) -> tuple[list[AttackView], set[int]]:
    cascade = "cascade_robust_accuracy" in rows
    robust = rows.get("cascade_robust_accuracy" if cascade else "robust_accuracy")
    clean = rows.get("clean_accuracy")
    if robust is None or clean is None or not uses:
        return [], set()
    # Stores written before attack jobs recorded these: such a job ran side by side on every clean-correct
    # example, and broke the ones it left not robust.
    run_on = int(metrics.get("run_on", clean.successes))
    broke = int(metrics.get("broke", clean.successes - robust.successes))
    views = [
        AttackView(
            job_key=key,
            experiment=use.experiment,
            defense=use.defense,
            guides=tuple(use.guides),
            target=use.target,
            threat=use.threat,
            norm=use.norm,
            eps=use.eps,
            attack=use.attack,
            clean=_metric(clean),
            robust=_metric(robust),
            run_on=run_on,
            broke=broke,
            cascade=cascade,
            scale=robust.scale,
            wall_s=robust.wall_s,
            n_forward=robust.n_forward,
            n_backward=robust.n_backward,
            cost_per_prediction=robust.cost_per_prediction,
            retrains_classifier=use.retrains_classifier is True,
        )
        for use in uses
    ]
    return views, {robust.id, clean.id}


def _number(details: Mapping[str, Any], name: str) -> float | None:
    value = details.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(details: Mapping[str, Any], name: str) -> int | None:
    value = _number(details, name)
    return None if value is None else int(value)


def _certified_views(
    job: Job, job_rows: list[Result], uses: list[EvaluationUse], flags: list[Flag]
) -> tuple[list[CertifiedView], set[int]]:
    """One view per use of a certify job, and the ids of the rows they show. Its parameters come from the
    rows' ``details`` (what ran), sigma from the labels where the rows do not say. Should a radius or a
    radius-0 metric be stored twice, the first row is shown here and the other among the unknown rows."""
    if not uses:
        return [], set()
    ordered = sorted(job_rows, key=lambda r: (r.epsilon, r.id))
    certified: dict[float, Result] = {}
    single: dict[str, Result] = {}
    for r in ordered:
        if r.metric == CERTIFIED:
            certified.setdefault(r.epsilon, r)
        elif r.metric in (ABSTAIN, SMOOTHED_CLEAN):
            single.setdefault(r.metric, r)
    shown = [*certified.values(), *single.values()]
    details: dict[str, Any] = {}
    for r in shown:
        for name, value in (r.details or {}).items():
            details.setdefault(name, value)
    first = next(iter(certified.values()))
    points = tuple(
        CertifiedPoint(radius, _number(r.details or {}, "radius_declared"), _metric(r))
        for radius, r in certified.items()
    )
    abstain, clean = single.get(ABSTAIN), single.get(SMOOTHED_CLEAN)
    preset = details.get("preset")
    failed = tuple((f.check, f.detail) for f in flags if not f.passed)
    return [
        CertifiedView(
            job_key=job.key,
            experiment=use.experiment,
            kind=use.kind,
            defense=use.defense,
            defense_kind=use.defense_kind,
            guides=tuple(use.guides),
            target=use.target,
            dataset=use.dataset,
            sigma=_number(details, "sigma") if "sigma" in details else use.sigma,
            noise_space=str(details.get("noise_space", "unknown")),
            n0=_count(details, "n0"),
            samples=_count(details, "n"),
            alpha=_number(details, "alpha"),
            noise_batch=_count(details, "noise_batch"),
            preset=str(preset) if preset is not None else None,
            points=points,
            abstain=_metric(abstain) if abstain is not None else None,
            smoothed_clean=_metric(clean) if clean is not None else None,
            scale=first.scale,
            wall_s=first.wall_s,
            cost_per_prediction=first.cost_per_prediction,
            retrains_classifier=use.retrains_classifier is True,
            failed_checks=failed,
            computed_in=job.run_id,
            passed_checks=tuple((f.check, f.detail) for f in flags if f.passed),
            relation=use.relation,
        )
        for use in uses
    ], {r.id for r in shown}


def _other_view(job: Job, r: Result, retrains: bool) -> OtherView:
    return OtherView(
        job_key=job.key,
        job_kind=job.kind,
        dataset=r.dataset,
        defense=r.defense,
        guides=tuple(str(g) for g in r.guides),
        target=r.target,
        norm=r.norm,
        eps=r.epsilon,
        attack=r.attack,
        metric=r.metric,
        value=_metric(r),
        scale=r.scale,
        cost_per_prediction=r.cost_per_prediction,
        retrains_classifier=retrains,
        details=json.dumps(r.details, sort_keys=True) if r.details else "",
    )


def latest_runs(store: Store) -> dict[MatrixKey, Run]:
    """Per matrix, the run its tables show: the latest finished one, else the latest of any status."""
    latest: dict[MatrixKey, Run] = {}
    for run in store.runs():
        key = matrix_key(run)
        current = latest.get(key)
        if current is None or run.status == "done" or current.status != "done":
            latest[key] = run
    return latest
