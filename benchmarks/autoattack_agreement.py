"""Does a stored cell's worst case agree with AutoAttack run directly on the same pipeline and examples?

The number a cell reports is the harness's per-example worst case over its attacks (the standard protocol's
cascade, or a custom set). A reviewer checks it the obvious way: take the same trained front-end and target
classifier and the same evaluation images, in the same order, and run pyautoattack's
``AutoAttack(version='standard')`` on them. The harness's robust accuracy should come out within 1 point of
that, or below it. This script does that check for every cell a ``bench run`` wrote:

- the cell's pipeline is rebuilt exactly as the harness built it: each run's matrix (stored in the results
  store) is planned again, the cells whose job keys match a completed stored cell are kept, and their trained
  front-end, target classifier and evaluation subset come from the stored artifacts through the harness's own
  job code (:func:`bench.jobs.attack.pipeline_for`, :func:`bench.jobs.attack.eval_data`); the clean
  predictions are recomputed and compared with the stored ones, so a rebuild that is not exact shows;
- AutoAttack is pyautoattack's own class with its own version preset, given the cell's norm and radius, run on
  the examples the rebuilt pipeline classifies correctly (as the harness attacks only those), through the
  pipeline with BPDA on the parts the defense declares non-differentiable (as the harness's AutoAttack job);
- its output is not taken on its word: every point is checked to lie in the threat's ball and in [0,1] (one
  that does not is counted and projected back, as the harness does with pyautoattack's float rounding) and
  re-classified in a fresh forward pass (:func:`bench.evaluation.verify.verified_correct`); AutoAttack's own
  claims that the fresh pass does not confirm are counted.

Per cell it prints n, the harness's and AutoAttack's robust accuracy, the difference in points, and the
discordant examples both ways. ``--n-iter`` / ``--n-queries`` reduce AutoAttack's budget (100 APGD/FAB
iterations and 5000 Square queries in the published protocol); the reduction is printed with the table. The
exit status is 1 when some cell's number lies more than ``--tolerance`` points above AutoAttack's.

    python benchmarks/autoattack_agreement.py --db results.db --artifacts artifacts \
        [--cell 'aaa[A+B] -> A'] [--limit 200] [--threads 2] [--json out.json]

Randomized and smoothed pipelines are left out (AutoAttack's ``standard`` version assumes a deterministic
model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.api import JobContext, Pipeline, Threat, load_plugins
from bench.artifacts import ArtifactStore, StoredArtifact
from bench.attacks.autoattack import (
    AA_NORM,
    AutoAttack,
    AutoAttackParams,
    captured_pyautoattack,
)
from bench.cli import resolve_device
from bench.config import ClassifierConfig, MatrixConfig
from bench.evaluation.judge import declared_smoothing, judged
from bench.evaluation.verify import verified_correct
from bench.jobs.attack import eval_data, pipeline_for
from bench.jobs.configs import CellJobConfig
from bench.jobs.env import Env
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream
from bench.plan import plan_matrix
from bench.storage import Store
from bench.storage.models import Result, Run


@dataclass(frozen=True)
class StoredCell:
    """A completed cell of the store, with what rebuilding its pipeline and examples needs."""

    name: str
    spec: JobSpec
    upstream: Upstream
    env: Env
    #: The stored per-example outcomes of the cell's rows, in evaluation order.
    clean: str
    robust: str


@dataclass
class Agreement:
    """One cell: the harness's robust examples against AutoAttack's, on the first ``n`` examples."""

    cell: str
    n: int
    #: Examples the rebuilt pipeline gets right, and how many of them differ from the stored clean outcomes
    #: (0 when the rebuild is exact).
    clean: int
    clean_mismatch: int
    harness_robust: int
    autoattack_robust: int
    #: Robust for the harness, broken by AutoAttack: where the harness's number is too high.
    autoattack_only: int
    #: Broken by the harness, robust for AutoAttack.
    harness_only: int
    #: AutoAttack's points outside the ball or [0,1] (projected back before judging) and its claimed
    #: successes that the fresh forward pass did not confirm.
    outside_ball: int
    unconfirmed_claims: int
    n_forward: int
    n_backward: int
    wall_s: float
    warnings: list[str] = field(default_factory=list)

    @property
    def harness_pct(self) -> float:
        return 100 * self.harness_robust / self.n

    @property
    def autoattack_pct(self) -> float:
        return 100 * self.autoattack_robust / self.n

    @property
    def diff_points(self) -> float:
        """Harness minus AutoAttack, in percentage points: positive where the harness reports more robust."""
        return self.harness_pct - self.autoattack_pct

    def within(self, tolerance: float) -> bool:
        return self.diff_points <= tolerance + 1e-9


def stored_matrix(run: Run) -> MatrixConfig:
    """The matrix a run planned, from its stored dump.

    The dump lists every field, but a model-zoo classifier refuses fields it brings itself when they are
    *given*, even at their defaults; fields left at their default are dropped so it validates as written.
    """
    raw = json.loads(json.dumps(run.matrix))
    fields = ClassifierConfig.model_fields
    for entry in raw["classifiers"].values():
        for name in [k for k, v in entry.items() if k in fields and not fields[k].is_required()]:
            if entry[name] == fields[name].get_default(call_default_factory=True):
                del entry[name]
    return MatrixConfig.model_validate(raw)


def cell_name(spec_key: str, upstream: Upstream) -> str:
    use = upstream.graph.evaluation_use(spec_key)
    guides = f"[{'+'.join(use.guides)}]" if use.guides else ""
    return f"{use.defense}{guides} -> {use.target} {use.norm} {use.eps:g}"


def stored_cells(
    store: Store,
    artifacts: ArtifactStore,
    data_root: Path,
    device: torch.device,
    *,
    run_ids: Sequence[int] = (),
    filters: Sequence[str] = (),
) -> tuple[list[StoredCell], list[str]]:
    """Every completed worst-case cell the store's runs planned (or those of ``run_ids``), whose name
    contains one of ``filters`` when any are given; and notes on runs or cells that could not be rebuilt."""
    load_plugins()
    found: dict[str, StoredCell] = {}
    notes: list[str] = []
    for run in store.runs():
        if run_ids and run.id not in run_ids:
            continue
        env = Env(data_root, False, artifacts, JobContext(device=device))
        try:
            graph = plan_matrix(stored_matrix(run), Path(run.matrix_path).parent, env).graph
        except Exception as exc:  # a run's matrix this code can no longer plan is reported, not fatal
            notes.append(f"run {run.id} ({run.matrix_name}): not planned again ({type(exc).__name__}: {exc})")
            continue

        def lookup(key: str) -> dict[str, StoredArtifact]:
            stored = store.completed_artifacts(key)
            if stored is None:
                raise KeyError(f"job {key[:12]} is not complete in the store")
            return {a.name: a for a in stored}

        upstream = Upstream(graph, env, lookup)
        cells = [s for s in graph if s.kind == "cell" and s.key not in found]
        rows: dict[tuple[str, str], Result] = {
            (r.job_key, r.metric): r
            for r in store.results_for([s.key for s in cells])
            if r.attack == "worst-case"
        }
        for spec in cells:
            robust, clean = rows.get((spec.key, "robust_accuracy")), rows.get((spec.key, "clean_accuracy"))
            if robust is None or clean is None or store.completed_artifacts(spec.key) is None:
                continue
            name = cell_name(spec.key, upstream)
            if filters and not any(f in name for f in filters):
                continue
            found[spec.key] = StoredCell(name, spec, upstream, env, clean.outcomes, robust.outcomes)
    return list(found.values()), notes


def reference_autoattack(
    pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, params: AutoAttackParams
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """pyautoattack's ``AutoAttack`` (its ``standard`` preset) on ``x``: its adversarial points, the labels
    it says the pipeline gives them, and its soundness warnings.

    Budgets other than the published ones are set by the harness's own knob-setting code
    (``AutoAttack._configure``), so a reduction means the same thing on both sides; at the published budgets
    on 10 classes it changes nothing.
    """
    from pyautoattack import AutoAttack as ReferenceAutoAttack

    with torch.no_grad():
        n_cls = int(pipeline(x[:1]).shape[1])
    with captured_pyautoattack([x.device]) as said:
        aa = ReferenceAutoAttack(
            pipeline, norm=AA_NORM[threat.norm], eps=threat.eps, seed=params.seed, version="standard",
            device=x.device,
        )
        AutoAttack(params)._configure(aa, pipeline, threat, n_cls)
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=params.batch_size)
    return x_adv.detach().to(x.dtype), y_adv, list(dict.fromkeys(said.warnings))


def not_comparable(pipeline: Pipeline) -> str | None:
    """Why AutoAttack's ``standard`` version cannot judge this pipeline as the harness does, if it cannot:
    it assumes a deterministic model, which a randomized or smoothed one is not."""
    if declared_smoothing(pipeline) is not None:
        return "a smoothed pipeline (the harness judges it by PREDICT on noise)"
    if pipeline.randomized:
        return "a randomized pipeline (AutoAttack's rand version and the harness's vote apply)"
    return None


def compare(cell: StoredCell, params: AutoAttackParams, limit: int | None = None) -> Agreement:
    """AutoAttack on the first ``limit`` (default all) evaluation examples of the cell's rebuilt pipeline."""
    start = time.perf_counter()
    spec, upstream, device = cell.spec, cell.upstream, cell.env.ctx.device
    data = eval_data(spec, upstream, cell.env)
    n = len(data) if limit is None else min(limit, len(data))
    pipeline = pipeline_for(spec, upstream)
    why = not_comparable(pipeline)
    if why is not None:
        raise ValueError(f"{cell.name}: {why}")
    classes = data.info.num_classes
    c = spec.settings_as(CellJobConfig)
    threat = Threat(c.norm, c.eps)
    x, y = data.float_images(device)[:n], data.labels[:n].to(device)
    batch = params.batch_size
    starts = range(0, n, batch)
    clean = torch.cat([judged(pipeline, x[i : i + batch], classes) == y[i : i + batch] for i in starts])
    stored_clean = torch.tensor([c == "1" for c in cell.clean[:n]], device=device)
    harness = torch.tensor([c == "1" for c in cell.robust[:n]], device=device)
    pipeline.reset_counters()
    robust = torch.zeros(n, dtype=torch.bool, device=device)
    outside = unconfirmed = 0
    warnings: list[str] = []
    idx = clean.nonzero().flatten()
    if idx.numel():
        xc, yc = x[idx], y[idx]
        x_adv, y_adv, warnings = reference_autoattack(pipeline, xc, yc, threat, params)
        bad = threat.violations(xc, x_adv)
        outside = int(bad.sum())
        x_adv = torch.where(bad.view(-1, *[1] * (xc.dim() - 1)), threat.project(xc, x_adv), x_adv)
        still = verified_correct(pipeline, xc, x_adv, yc, threat, classes)
        robust[idx] = still
        unconfirmed = int((still & (y_adv.to(device) != yc)).sum())
    return Agreement(
        cell=cell.name,
        n=n,
        clean=int(clean.sum()),
        clean_mismatch=int((clean != stored_clean).sum()),
        harness_robust=int(harness.sum()),
        autoattack_robust=int(robust.sum()),
        autoattack_only=int((harness & ~robust).sum()),
        harness_only=int((~harness & robust).sum()),
        outside_ball=outside,
        unconfirmed_claims=unconfirmed,
        n_forward=pipeline.n_forward,
        n_backward=pipeline.n_backward,
        wall_s=time.perf_counter() - start,
        warnings=warnings,
    )


def markdown(found: Sequence[Agreement], tolerance: float) -> list[str]:
    header = ["cell", "n", "clean", "harness robust %", "AutoAttack robust %", "difference (points)",
              "AA broke, harness robust", "harness broke, AA robust", f"within {tolerance:g} point",
              "AA outside ball", "AA claims not confirmed", "clean differs from store", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in found:
        cols = [a.cell, a.n, a.clean, f"{a.harness_pct:.1f}", f"{a.autoattack_pct:.1f}",
                f"{a.diff_points:+.1f}", a.autoattack_only, a.harness_only,
                "yes" if a.within(tolerance) else "**no**", a.outside_ball, a.unconfirmed_claims,
                a.clean_mismatch, f"{a.wall_s:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cols) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, required=True, help="the results store a `bench run` wrote")
    p.add_argument("--artifacts", type=Path, required=True, help="its artifacts folder")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    p.add_argument("--cell", action="append", default=[],
                   help="only cells whose name contains this (repeatable), e.g. 'aaa[A+B] -> A'")
    p.add_argument("--run", type=int, action="append", default=[], help="only cells planned by this run id")
    p.add_argument("--limit", type=int, default=None, help="the first N evaluation examples of each cell")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--n-iter", type=int, default=AutoAttackParams().n_iter,
                   help="APGD and FAB iterations (published: %(default)s)")
    p.add_argument("--n-queries", type=int, default=AutoAttackParams().n_queries,
                   help="Square queries (published: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="pyautoattack's seed")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="points the harness may lie above AutoAttack (default %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = AutoAttackParams(n_iter=args.n_iter, n_queries=args.n_queries, seed=args.seed,
                              batch_size=args.batch_size)
    budget = AutoAttack(params).budget_note()
    store = Store(args.db)
    cells, notes = stored_cells(store, ArtifactStore(args.artifacts), args.data_dir,
                                resolve_device(args.device), run_ids=args.run, filters=args.cell)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not cells:
        print("no completed cell matches", file=sys.stderr)
        return 2
    print(f"AutoAttack standard, {'published budgets' if budget is None else 'reduced: ' + budget}")
    found = []
    for cell in cells:
        why = not_comparable(pipeline_for(cell.spec, cell.upstream))
        if why is not None:
            print(f"skipped {cell.name}: {why}", file=sys.stderr)
            continue
        a = compare(cell, params, args.limit)
        found.append(a)
        print(f"{a.cell}: harness {a.harness_pct:.1f}%, AutoAttack {a.autoattack_pct:.1f}%", file=sys.stderr,
              flush=True)
    print("\n".join(markdown(found, args.tolerance)))
    for a in found:
        for w in a.warnings:
            print(f"pyautoattack on {a.cell}: {w}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "budget": budget or "published",
            "tolerance_points": args.tolerance,
            "cells": [{**asdict(a), "harness_pct": a.harness_pct, "autoattack_pct": a.autoattack_pct,
                       "diff_points": a.diff_points, "within": a.within(args.tolerance)} for a in found],
        }, indent=2))
    return 0 if all(a.within(args.tolerance) for a in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
