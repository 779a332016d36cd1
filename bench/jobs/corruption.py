"""Accuracy of one pipeline on one common corruption at one severity (Hendrycks & Dietterich 2019)."""

from __future__ import annotations

import time

import torch

from bench.data.corruptions import corrupted_dataset
from bench.evaluation.judge import judged, predict_details
from bench.evaluation.rows import Metric, ResultRow, accuracy_row, prediction_cost
from bench.jobs.attack import eval_data, pipeline_for
from bench.jobs.configs import CorruptionJobConfig
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(CorruptionJobConfig)
    start = time.perf_counter()
    clean_data = eval_data(spec, upstream, env)
    corrupted = corrupted_dataset(clean_data, c.corruption, c.severity, c.seed)
    pipeline = pipeline_for(spec, upstream)
    batch = c.batch_size
    # Clean answers first, all of them, as attack jobs draw them: a randomized pipeline then gives this
    # job the same clean answers as the cell's attacks.
    classes = clean_data.info.num_classes

    def answers(x: torch.Tensor) -> torch.Tensor:
        return judged(pipeline, x, classes, c.predict)

    clean = [(answers(x) == y).cpu() for x, y in clean_data.batches(batch, env.ctx.device)]
    right = [(answers(xc) == y).cpu() for xc, y in corrupted.batches(batch, env.ctx.device)]
    use = upstream.graph.evaluation_use(spec.key)
    wall = time.perf_counter() - start

    def row(metric: Metric, correct: torch.Tensor) -> ResultRow:
        return accuracy_row(
            use,
            attack=use.attack,
            metric=metric,
            correct=correct,
            examples=corrupted.identity,
            wall_s=wall,
            n_forward=pipeline.n_forward,
            n_backward=pipeline.n_backward,
            scale_notes=spec.scale_notes,
            cost_per_prediction=prediction_cost(pipeline, c.predict),
            details=predict_details(pipeline, c.predict),
        )

    return JobOutput(
        tensors={
            "outcomes": {
                "clean": torch.cat(clean).to(torch.uint8),
                "corrupted": torch.cat(right).to(torch.uint8),
            }
        },
        metrics={"wall_s": wall},
        results=[row("clean_accuracy", torch.cat(clean)), row("corrupted_accuracy", torch.cat(right))],
    )
