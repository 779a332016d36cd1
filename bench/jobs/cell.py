"""A cell: the worst case over every attack run on one pipeline at one radius, plus its soundness checks.

The cell's deps after the front-end and the target are its own attack jobs (at its radius) and, for a
cumulative matrix, the attack jobs of the same pipeline at the threat's smaller radii, whose broken examples
it also counts (:mod:`bench.evaluation.counterexamples`), as it counts those the checks' attacks break.
"""

from __future__ import annotations

import time

import torch

from bench.api import ATTACK_CHECKS, BASIC_CHECKS, AttackEvidence, CellEvidence, Threat
from bench.evaluation.counterexamples import CHECK_NAME, Found, fold, padded
from bench.evaluation.judge import predict_details
from bench.evaluation.rows import Metric, ResultRow, accuracy_row, prediction_cost
from bench.jobs.attack import eval_data, pipeline_for
from bench.jobs.configs import AttackJobConfig, CellJobConfig
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream


def evidence_of(upstream: Upstream, key: str) -> AttackEvidence:
    t = upstream.tensors(key, "outcomes")
    return AttackEvidence(
        upstream.graph.evaluation_use(key).attack,
        upstream.graph[key].config,
        t["clean"].bool(),
        t["robust"].bool(),
        t["x_adv"],
        upstream.json(key, "attack"),
        n_backward=int(t["gradients"][2]),
        nonfinite_grads=int(t["gradients"][0]),
        zero_grads=int(t["gradients"][1]),
        attacked=t["attacked"].bool() if "attacked" in t else None,
        dead_gradients=t["dead"].bool() if "dead" in t else None,
    )


def broken_at_smaller_radius(upstream: Upstream, key: str) -> list[Found]:
    """What the attack job ``key`` and, for the last job of a cascade, every job before it broke."""
    found = []
    while True:
        a = evidence_of(upstream, key)
        attacked = a.attacked if a.attacked is not None else a.clean
        eps = upstream.graph[key].settings_as(AttackJobConfig).eps
        found.append(Found(f"{a.label} at eps={eps:g}", attacked & ~a.robust))
        deps = upstream.graph[key].deps
        if len(deps) < 3:
            return found[::-1]
        key = deps[2]


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(CellJobConfig)
    start = time.perf_counter()
    data = eval_data(spec, upstream, env)
    attacks, walls, passes = [], 0.0, torch.zeros(2, dtype=torch.float64)
    found: list[Found] = []
    for key in spec.deps[2:]:
        if upstream.graph[key].settings_as(AttackJobConfig).eps < c.eps:
            found += broken_at_smaller_radius(upstream, key)
            continue
        attacks.append(evidence_of(upstream, key))
        t = upstream.tensors(key, "outcomes")
        walls += float(t["cost"][0])
        passes += t["cost"][1:]
    evidence = CellEvidence(
        make_pipeline=lambda: pipeline_for(spec, upstream),
        data=data,
        threat=Threat(c.norm, c.eps),
        attacks=attacks,
        ctx=env.ctx,
        n_checks=min(c.n_checks, len(data)),
        batch_size=c.batch_size,
    )
    checks = list(BASIC_CHECKS) + (list(ATTACK_CHECKS) if c.checks else [])
    flags = []
    unreliable: dict[str, list[str]] = {}
    for entry in checks:
        result = entry.obj(evidence)
        flags.append({"check": entry.name, "passed": result.passed, "detail": result.detail})
        if result.counterexamples is not None:
            found.append(Found(f"check {entry.name}", padded(result.counterexamples, len(data))))
        for label in result.unreliable_attacks:
            unreliable.setdefault(label, []).append(entry.name)
    own = evidence.worst_case
    worst, verdict = fold(own, found, [a.label for a in attacks])
    flags.append({"check": CHECK_NAME, "passed": verdict.passed, "detail": verdict.detail})
    for label in verdict.unreliable_attacks:
        unreliable.setdefault(label, []).append(CHECK_NAME)
    use = upstream.graph.evaluation_use(spec.key)
    wall = walls + time.perf_counter() - start
    judged_pipeline = pipeline_for(spec, upstream)
    cost, details = prediction_cost(judged_pipeline, c.predict), predict_details(judged_pipeline, c.predict)

    def row(metric: Metric, correct: torch.Tensor) -> ResultRow:
        return accuracy_row(
            use,
            attack="worst-case",
            metric=metric,
            correct=correct,
            examples=data.identity,
            wall_s=wall,
            n_forward=int(passes[0]),
            n_backward=int(passes[1]),
            scale_notes=spec.scale_notes,
            cost_per_prediction=cost,
            details=details,
        )

    return JobOutput(
        metrics={
            "attacks": [a.label for a in attacks],
            "failed_checks": [f["check"] for f in flags if not f["passed"]],
            # Attack label -> the checks that found its own number unreliable (the per-attack table's mark).
            "unreliable_attacks": unreliable,
            # Robust examples the cell's own attacks left, before the fold counted other finds.
            "robust_own_attacks": int(own.sum()),
        },
        results=[row("clean_accuracy", attacks[0].clean), row("robust_accuracy", worst)],
        flags=flags,
    )
