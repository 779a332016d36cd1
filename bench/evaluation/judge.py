"""What the harness takes a pipeline's answer to be, for clean accuracy and for every adversarial re-check.

A deterministic pipeline answers with one forward pass and a randomized one with a majority over fresh draws
(:meth:`~bench.api.Pipeline.predict`). A pipeline whose front-end declares smoothing is the smoothed
classifier g, and g's answer is Cohen et al. (2019)'s PREDICT on fresh noise: the top class of ``n`` noisy
copies, or an abstention unless a binomial test separates it from the runner-up at level α. Abstaining is
right for no label, so it counts as an error, as a robust-accuracy claim for g requires. One forward pass of
f∘D without noise says nothing about g: either can be right where the other is wrong.

PREDICT's parameters for judging are ``n = 1000`` and ``α = 0.001``. Cohen et al.'s α; n is a hundredth of
their CERTIFY n (100,000): judging runs twice per example and attack (clean and adversarial) and must stay
affordable, and at n = 1000 PREDICT abstains only where the top class wins less than about 55% of the draws
(when the two leading classes take them all), which is a genuine near-tie of g, not a lack of draws. They
are fixed, not a matrix setting: the soundness checks re-judge a cell's examples through the cell's
pipeline, and one setting has to govern every judgment of a cell. They enter the key of every evaluating
job of a smoothed pipeline (and of no other), so changing them recomputes exactly those, and each row of
such a job records them in its ``details`` and n as its ``cost_per_prediction``.

The noise comes from the front-end's private generator, which the harness reseeds per job (the judging seed
for clean answers, the attack seed for the re-checks), so the judgments are reproducible and fresh, and no
attack, which draws its own noise from its own generator, has seen them.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from bench.api import GaussianSmoothing, Pipeline
from bench.certify import DEFAULT_NOISE_BATCH, SmoothedClassifier, check_alpha, noise_for
from bench.records import Record

#: PREDICT's noise draws per judgment of a smoothed pipeline (see the module docstring for the choice).
PREDICT_N = 1000
#: PREDICT's level: the probability that a judgment names a class other than g's is at most this.
PREDICT_ALPHA = 0.001


class SmoothedPredict(Record):
    """PREDICT's parameters for judging a smoothed pipeline, as its evaluating jobs are keyed by them."""

    n: int = Field(PREDICT_N, ge=1)
    alpha: float = PREDICT_ALPHA
    #: Noisy copies per forward pass; it splits the draws among generator calls, so it decides which draws a
    #: seed gives and is part of the parameters.
    noise_batch: int = Field(DEFAULT_NOISE_BATCH, ge=1)

    @field_validator("alpha")
    @classmethod
    def _level(cls, value: float) -> float:
        check_alpha(value)
        return value


DEFAULT_PREDICT = SmoothedPredict()


def declared_smoothing(pipeline: Pipeline) -> GaussianSmoothing | None:
    """The smoothing the pipeline's front-end declares (through a straight-through wrapper too), or None."""
    return pipeline.frontend.smoothing


def judged(
    pipeline: Pipeline, x: torch.Tensor, num_classes: int, predict: SmoothedPredict | None = None
) -> torch.Tensor:
    """The pipeline's answer per image of ``x`` (N, C, H, W): a class, or -1 (right for no label) for an
    abstention of PREDICT or a randomized pipeline's tied vote."""
    smoothing = declared_smoothing(pipeline)
    if smoothing is None:
        return pipeline.predict(x)
    p = predict or DEFAULT_PREDICT
    g = SmoothedClassifier(pipeline, num_classes, noise_for(smoothing, pipeline.classifier, x.shape[1]))
    gen = pipeline.frontend.rng(x.device)
    answers = [g.predict(image, p.n, p.alpha, gen, p.noise_batch) for image in x.detach()]
    return torch.tensor(answers, dtype=torch.long, device=x.device)


def passes_per_prediction(pipeline: Pipeline, predict: SmoothedPredict | None = None) -> int:
    """Forward passes of f∘D one answer of :func:`judged` costs: 1 for a deterministic pipeline, the vote's
    draws for a randomized one, PREDICT's n for a smoothed one (one pass per noisy copy)."""
    if declared_smoothing(pipeline) is not None:
        return (predict or DEFAULT_PREDICT).n
    return pipeline.vote_draws


def predict_details(pipeline: Pipeline, predict: SmoothedPredict | None = None) -> dict[str, Any] | None:
    """What a row judged by PREDICT depends on beyond its accuracy, for the row's ``details`` (named as a
    certify row's): the smoothing and PREDICT's parameters. None for a pipeline that declares no smoothing,
    whose rows carry no details."""
    smoothing = declared_smoothing(pipeline)
    if smoothing is None:
        return None
    p = predict or DEFAULT_PREDICT
    return {
        "judged_by": "predict",
        "sigma": smoothing.sigma,
        "noise_space": smoothing.space,
        **({} if smoothing.std is None else {"noise_std": list(smoothing.std)}),
        "n": p.n,
        "alpha": p.alpha,
        "noise_batch": p.noise_batch,
    }
