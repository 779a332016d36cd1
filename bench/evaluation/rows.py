"""Result rows: a value always travels with n, its exact 95% interval, its cost and its scale."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from bench.api import Pipeline
from bench.evaluation.judge import SmoothedPredict, passes_per_prediction
from bench.stats import clopper_pearson
from bench.uses import EvaluationUse

#: ``cascade_robust_accuracy``: an attack job of a cascade, robust against it and every attack before it
#: (the cascade's running worst case; the attack ran only on what the earlier ones left robust, so this is
#: not the attack's own number). A certify job's rows: ``certified_accuracy`` per radius (right and certified
#: at least that pixel-space l2 radius), and at radius 0 ``abstain_rate`` (CERTIFY abstained) and
#: ``smoothed_clean_accuracy`` (CERTIFY's class is the label).
Metric = Literal[
    "clean_accuracy",
    "robust_accuracy",
    "cascade_robust_accuracy",
    "corrupted_accuracy",
    "certified_accuracy",
    "abstain_rate",
    "smoothed_clean_accuracy",
]


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
    #: Forward passes of the pipeline one prediction costs: 1 for a deterministic pipeline, its vote draws
    #: for a randomized one, n0 + n for CERTIFY. None in stores written before it was recorded.
    cost_per_prediction: int | None = None
    #: What else a row's number depends on; a certify row's smoothing and CERTIFY parameters.
    details: dict[str, Any] | None = None


class CertificateRow(BaseModel):
    """CERTIFY's outcome on one example: a ``certificates`` row, less the job it belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The example's place in the job's evaluation order (its character in the rows' ``outcomes``).
    position: int
    #: Its position in the test split, which seeds its noise: the same image in another selection.
    test_index: int
    label: int
    #: The certified class; None where CERTIFY abstained.
    prediction: int | None
    #: nA: estimation draws in which the base pipeline chose the selected class.
    count: int
    #: The one-sided (1 - alpha) Clopper-Pearson lower bound on that class's probability.
    p_lower: float
    #: The certified l2 radius in the declared noise space, and in [0,1] pixel space; 0 on abstain.
    radius: float
    radius_pixel: float


def prediction_cost(pipeline: Pipeline, predict: SmoothedPredict | None = None) -> int:
    """Forward passes one of ``pipeline``'s judged predictions costs (:func:`bench.evaluation.judge.judged`):
    one per vote draw, which a deterministic pipeline sets to 1, or PREDICT's n for a smoothed pipeline. The
    rows of attack, cell and corruption jobs carry it."""
    return passes_per_prediction(pipeline, predict)


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
    epsilon: float | None = None,
    cost_per_prediction: int | None = None,
    details: dict[str, Any] | None = None,
) -> ResultRow:
    """The row of one accuracy over ``correct``; ``epsilon`` defaults to the use's radius."""
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
        epsilon=use.eps if epsilon is None else epsilon,
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
        cost_per_prediction=cost_per_prediction,
        details=details,
    )
