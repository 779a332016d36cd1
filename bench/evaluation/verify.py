"""The harness's own judgment of an adversarial example, independent of the attack that proposed it."""

from __future__ import annotations

import torch

from bench.api import Pipeline, Threat
from bench.errors import EvaluationError
from bench.evaluation.judge import SmoothedPredict, judged


def verified_correct(
    pipeline: Pipeline,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    threat: Threat,
    num_classes: int,
    predict: SmoothedPredict | None = None,
) -> torch.Tensor:
    """Per example: is the pipeline still right on ``x_adv``? Refuses to judge points outside the threat.

    Every point must lie in the epsilon ball (1e-6 slack) and in [0,1]; an attack that returns one is broken,
    and a number computed from it would be wrong, so the job fails instead. The label comes from a fresh
    judgment (:func:`~bench.evaluation.judge.judged`: a forward pass, a majority over fresh draws for a
    randomized pipeline, PREDICT on fresh noise for a smoothed one), never from the attack's own logits.
    """
    if x_adv.shape != x.shape:
        raise EvaluationError(
            f"attack returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}"
        )
    bad = threat.violations(x, x_adv)
    if bool(bad.any()):
        worst = float(threat.distance(x, x_adv).max())
        raise EvaluationError(
            f"{int(bad.sum())} adversarial examples lie outside the {threat.norm} ball of radius "
            f"{threat.eps:g} or outside [0,1] (largest distance {worst:.6g}); the attack is broken and no "
            "number is reported"
        )
    with torch.no_grad():
        return judged(pipeline, x_adv.detach(), num_classes, predict) == y
