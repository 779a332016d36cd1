"""What each job kind computes from: one frozen model per kind, built by the planner, read by the job.

A config's dump (JSON mode) is exactly what the job's key hashes and the store keeps (see
:mod:`bench.jobs.spec`), so a field changes job keys only when it is set; a field that does not apply is
None and absent from the dump (:class:`bench.records.Record`). Parameter blocks (a recipe's, a defense's, an
attack's) are held as the plug-in's own validated model and dumped with all of its fields.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import SerializeAsAny

from bench.api import AttackParams, DefenseParams, Norm, RecipeParams
from bench.config import Normalization
from bench.records import Record

JobKind = Literal["train-classifier", "train-defense", "attack", "cell", "corruption"]


class JobConfig(Record):
    job_kind: ClassVar[JobKind]


class ClassifierJobConfig(JobConfig):
    """A classifier as the graph knows it; one subclass per origin of its weights."""

    job_kind: ClassVar[JobKind] = "train-classifier"
    #: The registered architecture, or the model source for a zoo model.
    arch: str
    dataset: str
    num_classes: int
    #: Applied inside the model; identity for a zoo model, which normalizes its own input.
    normalization: Normalization
    seed: int
    #: Where the weights come from; each subclass fixes it.
    origin: Literal["train", "weights", "source"]


class TrainedClassifier(ClassifierJobConfig):
    origin: Literal["train"] = "train"
    recipe: str
    train: SerializeAsAny[RecipeParams]


class ClassifierFromWeights(ClassifierJobConfig):
    origin: Literal["weights"] = "weights"
    #: The file's content; its path is only a location (:attr:`bench.jobs.spec.JobSpec.locations`).
    weights_sha256: str


class ClassifierFromSource(ClassifierJobConfig):
    origin: Literal["source"] = "source"
    #: A registered model source, e.g. ``robustbench:Standard``.
    source: str


class FrontEndJobConfig(JobConfig):
    job_kind: ClassVar[JobKind] = "train-defense"
    #: The registered defense.
    kind: str
    params: SerializeAsAny[DefenseParams]
    input_shape: tuple[int, int, int]
    seed: int
    #: The training data, for defenses that train on data; None (absent) for the rest.
    dataset: str | None = None
    n_train: int | None = None
    #: Validation images held out of the training split; None (absent) when there are none.
    n_val: int | None = None


class EvaluatingJobConfig(JobConfig):
    """The evaluation settings every evaluating job (attack, cell, corruption) is keyed by."""

    protocol: int
    n_eval: int
    eval_seed: int
    batch_size: int
    eot_samples: int
    vote_draws: int
    #: The standard protocol's version (:mod:`bench.evaluation.standard`) for its attack and cell jobs; None
    #: (absent) for a custom attack set, and for corruption jobs, which attack nothing.
    standard_protocol: int | None = None


class AttackJobConfig(EvaluatingJobConfig):
    job_kind: ClassVar[JobKind] = "attack"
    #: The registered attack, and its revision (bumped when its code changes what it finds).
    attack: str
    revision: int
    params: SerializeAsAny[AttackParams]
    #: As :attr:`bench.config.AttackConfig.bpda`. A cascaded attack job's one further dep is the job before
    #: it in the cascade, whose surviving examples are the only ones it attacks.
    bpda: bool | Literal["frontend"]
    norm: Norm
    eps: float


class CellJobConfig(EvaluatingJobConfig):
    job_kind: ClassVar[JobKind] = "cell"
    norm: Norm
    eps: float
    checks: bool
    n_checks: int


class CorruptionJobConfig(EvaluatingJobConfig):
    job_kind: ClassVar[JobKind] = "corruption"
    corruption: str
    severity: int
    seed: int
    version: int

