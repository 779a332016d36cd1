"""Result rows: a value always travels with n, its exact 95% interval, its cost and its scale."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from bench.stats import clopper_pearson
from bench.uses import EvaluationUse

#: ``cascade_robust_accuracy``: an attack job of a cascade, robust against it and every attack before it
#: (the cascade's running worst case; the attack ran only on what the earlier ones left robust, so this is
#: not the attack's own number).
Metric = Literal["clean_accuracy", "robust_accuracy", "cascade_robust_accuracy", "corrupted_accuracy"]


class ResultRow(BaseModel):
    """One number as the store keeps it: a ``results`` row, less the job and run it belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    defense: str
    defense_kind: str
    guides: list[str]
    target: str
    relation: str
    norm: str
    epsilon: float
    attack: str
    metric: Metric
    n: int
    successes: int
    value: float
    ci_low: float
    ci_high: float
    wall_s: float
    n_forward: int
    n_backward: int
    #: ``full``, or ``reduced: `` and what was reduced.
    scale: str
    #: One '0'/'1' per example, in evaluation order.
    outcomes: str
    examples_sha256: str


def outcome_string(correct: torch.Tensor) -> str:
    return "".join("1" if bool(v) else "0" for v in correct.tolist())


def accuracy_row(
    use: EvaluationUse,
    *,
    attack: str,
    metric: Metric,
    correct: torch.Tensor,
    examples: str,
    wall_s: float,
    n_forward: int,
    n_backward: int,
    scale_notes: tuple[str, ...],
) -> ResultRow:
    n = int(correct.numel())
    k = int(correct.sum())
    low, high = clopper_pearson(k, n)
    return ResultRow(
        dataset=use.dataset,
        defense=use.defense,
        defense_kind=use.defense_kind,
        guides=list(use.guides),
        target=use.target,
        relation=use.relation,
        norm=use.norm,
        epsilon=use.eps,
        attack=attack,
        metric=metric,
        n=n,
        successes=k,
        value=k / n,
        ci_low=low,
        ci_high=high,
        wall_s=wall_s,
        n_forward=n_forward,
        n_backward=n_backward,
        scale="full" if not scale_notes else "reduced: " + "; ".join(scale_notes),
        outcomes=outcome_string(correct),
        examples_sha256=examples,
    )
