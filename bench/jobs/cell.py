"""A cell: the worst case over every attack run on one pipeline at one radius, plus its soundness checks."""

from __future__ import annotations

import time

import torch

from bench.api import ATTACK_CHECKS, BASIC_CHECKS, AttackEvidence, CellEvidence, Threat
from bench.evaluation.rows import Metric, ResultRow, accuracy_row
from bench.jobs.attack import eval_data, pipeline_for
from bench.jobs.configs import CellJobConfig
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(CellJobConfig)
    start = time.perf_counter()
    data = eval_data(spec, upstream, env)
    attacks, walls, passes = [], 0.0, torch.zeros(2, dtype=torch.float64)
    for key in spec.deps[2:]:
        t = upstream.tensors(key, "outcomes")
        label = upstream.graph.evaluation_use(key).attack
        attacks.append(
            AttackEvidence(
                label,
                upstream.graph[key].config,
                t["clean"].bool(),
                t["robust"].bool(),
                t["x_adv"],
                upstream.json(key, "attack"),
                n_backward=int(t["gradients"][2]),
                nonfinite_grads=int(t["gradients"][0]),
                zero_grads=int(t["gradients"][1]),
            )
        )
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
    for entry in checks:
        result = entry.obj(evidence)
        flags.append({"check": entry.name, "passed": result.passed, "detail": result.detail})
    use = upstream.graph.evaluation_use(spec.key)
    wall = walls + time.perf_counter() - start

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
        )

    return JobOutput(
        metrics={
            "attacks": [a.label for a in attacks],
            "failed_checks": [f["check"] for f in flags if not f["passed"]],
        },
        results=[row("clean_accuracy", attacks[0].clean), row("robust_accuracy", evidence.worst_case)],
        flags=flags,
    )
