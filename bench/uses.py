"""Where a matrix uses a job: the labels a run links each job with, which the report groups results by.

Jobs are keyed by content, so one job can serve several places of a matrix (a front-end shared by a native
and a cross-model experiment) and several matrices; these are the matrix's own names for each place, kept
beside the job in the store (``run_jobs.labels``) as their dumps.
"""

from __future__ import annotations

from typing import Literal

from bench.records import Record

ExperimentKind = Literal["native", "cross-model", "cross-dataset", "ensemble-size"]
#: How a target relates to the front-end's guides; ``no-guides`` for front-ends trained without any.
Relation = Literal["native", "cross-model", "cross-dataset", "no-guides"]


class ClassifierUse(Record):
    classifier: str
    #: The defense whose front-end job trained this classifier jointly with its front-end (a defense that
    #: ``trains_classifier``); None for a classifier of its own job, trained or loaded independently.
    trained_with: str | None = None


class FrontEndUse(Record):
    defense: str
    #: Empty for a front-end trained without guides (one artifact serves every guide set).
    guides: list[str]


class EvaluationUse(Record):
    """An attack, cell or corruption job: which pipeline, threat and attack it is in the matrix's terms."""

    experiment: int
    kind: ExperimentKind
    relation: Relation
    defense: str
    defense_kind: str
    guides: list[str]
    target: str
    #: The target's architecture (or model source); stores written before it was recorded have none.
    arch: str = ""
    dataset: str
    #: The guides' dataset; None in stores written before it was recorded, where it was the target's.
    train_dataset: str | None = None
    #: Ensemble size and draw, for ensemble-size experiments only.
    m: int | None = None
    draw: int | None = None
    #: The threat's name; ``corruption`` for a corruption job.
    threat: str
    #: A norm, or ``corruption``.
    norm: str
    #: The radius, or a corruption's severity.
    eps: float
    #: The attack's name in the matrix, ``worst-case`` for a cell, the corruption for a corruption job.
    attack: str
    #: A cell's attacks (the worst case is over these).
    attacks: list[str] | None = None
    #: The standard protocol's version when it chose the attacks; None for a custom attack set.
    standard_protocol: int | None = None
    #: A cell's attacks that ran as a cascade, in cascade order (each only on the examples every earlier one
    #: failed to break); None when every attack ran side by side on every example.
    cascade: list[str] | None = None
    #: True when the pipeline's robustness rests on training a classifier for it, so the defense is not
    #: model-agnostic: the defense trains its own classifier (``trains_classifier``, e.g. ``jat``: every row
    #: of it, transfer rows too, since its front-end exists only with that classifier), or the target's
    #: recipe trains it for robustness (``madry-at``, Gaussian noise). None otherwise.
    retrains_classifier: bool | None = None
    #: The smoothing σ (in the defense's declared noise space): on every certify job, and on every job of a
    #: smoothing defense the matrix plans once per σ (``certify.sigmas``); None otherwise.
    sigma: float | None = None
    #: The certify preset (:data:`bench.certify.PRESETS`) a certify job follows; None when the matrix set n0,
    #: n, alpha and the images itself.
    certify_preset: str | None = None


JobUse = ClassifierUse | FrontEndUse | EvaluationUse
