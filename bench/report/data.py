"""Read-only views of the store for reports and the CLI summary.

A run links to the jobs it covered with the labels its matrix gave them; a cell view joins those labels with
the content-keyed result rows and the cell's soundness flags. Because rows are keyed by content, the run a
page is built from is often not the run that computed its numbers (a resumed or repeated run links stored
jobs as ``skipped``), so every view also records which run last computed each job.
"""

from __future__ import annotations

import posixpath
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bench.storage import Store
from bench.storage.models import Flag, Result, Run
from bench.uses import ClassifierUse, EvaluationUse, FrontEndUse


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


def run_view(store: Store, run: Run, runs: Mapping[int, Run] | None = None) -> RunView:
    """The jobs ``run`` linked, with their rows; ``runs`` (by id) names the runs that computed them."""
    if runs is None:
        runs = {r.id: r for r in store.runs()}
    links = store.run_jobs(run.id)
    keys = [link.job_key for link in links]
    jobs = {j.key: j for j in store.jobs(keys)}
    results: dict[str, dict[str, Result]] = defaultdict(dict)
    for r in store.results_for(keys):
        results[r.job_key][r.metric] = r
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
        if job.kind == "train-classifier":
            for classifier in (ClassifierUse.model_validate(u) for u in uses):
                view.classifiers.append(
                    {
                        "label": classifier.classifier,
                        "key": job.key,
                        "config": job.config,
                        "metrics": job.metrics,
                        "wall_s": job.wall_s,
                    }
                )
            continue
        if job.kind == "train-defense":
            for frontend in (FrontEndUse.model_validate(u) for u in uses):
                view.frontends.append(
                    {
                        "label": frontend.defense,
                        "guides": frontend.guides,
                        "key": job.key,
                        "config": job.config,
                        "metrics": job.metrics,
                        "wall_s": job.wall_s,
                    }
                )
            continue
        rows = results.get(job.key, {})
        evaluations = [EvaluationUse.model_validate(u) for u in uses]
        if "corrupted_accuracy" in rows and "clean_accuracy" in rows:
            view.corruptions.extend(
                CorruptionView(
                    use.experiment,
                    use.defense,
                    tuple(use.guides),
                    use.target,
                    use.attack,
                    int(use.eps),
                    _metric(rows["clean_accuracy"]),
                    _metric(rows["corrupted_accuracy"]),
                    rows["corrupted_accuracy"].scale,
                )
                for use in evaluations
            )
            continue
        if job.kind == "attack":
            view.attacks.extend(_attack_views(job.key, job.metrics, rows, evaluations))
            continue
        if "robust_accuracy" not in rows or "clean_accuracy" not in rows:
            continue
        robust, clean = rows["robust_accuracy"], rows["clean_accuracy"]
        unreliable = job.metrics.get("unreliable_attacks", {})
        failed = tuple((f.check, f.detail) for f in flags.get(job.key, []) if not f.passed)
        passed = tuple((f.check, f.detail) for f in flags.get(job.key, []) if f.passed)
        for use in evaluations:
            view.cells.append(
                CellView(
                    job_key=job.key,
                    run_id=run.id,
                    matrix=run.matrix_name,
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
                    computed_in=computed_in,
                    attacks=tuple(use.attacks or ()),
                    m=use.m,
                    draw=use.draw,
                    failed_checks=failed,
                    passed_checks=passed,
                    standard_protocol=use.standard_protocol,
                    cascade=tuple(use.cascade or ()),
                    unreliable_attacks=tuple((a, tuple(checks)) for a, checks in unreliable.items()),
                )
            )
    view.computed = [RunShare(runs[i], computed_jobs[i], computed_cells[i]) for i in sorted(computed_jobs)]
    return view


def _attack_views(
    key: str, metrics: dict[str, Any], rows: dict[str, Result], uses: list[EvaluationUse]
) -> list[AttackView]:
    cascade = "cascade_robust_accuracy" in rows
    robust = rows.get("cascade_robust_accuracy" if cascade else "robust_accuracy")
    clean = rows.get("clean_accuracy")
    if robust is None or clean is None:
        return []
    # Stores written before attack jobs recorded these: such a job ran side by side on every clean-correct
    # example, and broke the ones it left not robust.
    run_on = int(metrics.get("run_on", clean.successes))
    broke = int(metrics.get("broke", clean.successes - robust.successes))
    return [
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
        )
        for use in uses
    ]


def latest_runs(store: Store) -> dict[MatrixKey, Run]:
    """Per matrix, the run its tables show: the latest finished one, else the latest of any status."""
    latest: dict[MatrixKey, Run] = {}
    for run in store.runs():
        key = matrix_key(run)
        current = latest.get(key)
        if current is None or run.status == "done" or current.status != "done":
            latest[key] = run
    return latest
