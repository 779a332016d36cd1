"""What each job kind computes from: one frozen model per kind, built by the planner, read by the job.

A config's dump (JSON mode) is exactly what the job's key hashes and the store keeps (see
:mod:`bench.jobs.spec`), so a field changes job keys only when it is set; a field that does not apply is
None and absent from the dump (:class:`bench.records.Record`). Parameter blocks (a recipe's, a defense's, an
attack's) are held as the plug-in's own validated model and dumped with all of its fields.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import SerializeAsAny, model_validator

from bench.api import AttackParams, DefenseParams, NoiseSpace, Norm, RecipeParams
from bench.config import Normalization
from bench.evaluation.judge import SmoothedPredict
from bench.records import Record

JobKind = Literal["train-classifier", "train-defense", "attack", "cell", "corruption", "certify"]


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
    origin: Literal["train", "weights", "source", "joint"]


class TrainedClassifier(ClassifierJobConfig):
    origin: Literal["train"] = "train"
    recipe: str
    train: SerializeAsAny[RecipeParams]
    #: The content of the weights file training starts from (fine-tuning; its path is only a location);
    #: None (absent) for training from a random initialization.
    init_sha256: str | None = None


class ClassifierFromWeights(ClassifierJobConfig):
    origin: Literal["weights"] = "weights"
    #: The file's content; its path is only a location (:attr:`bench.jobs.spec.JobSpec.locations`).
    weights_sha256: str


class ClassifierFromSource(ClassifierJobConfig):
    origin: Literal["source"] = "source"
    #: A registered model source, e.g. ``robustbench:Standard``.
    source: str


class JointClassifier(ClassifierJobConfig):
    """A classifier trained from scratch inside a front-end's job, jointly with the front-end (a defense that
    ``trains_classifier``); its own job (deps: that front-end job) takes the weights out of the front-end
    job's artifact ``classifier-{index}``. A different model from an independently trained classifier of the
    same architecture and seed, so a different job: its origin and dep set it apart."""

    origin: Literal["joint"] = "joint"
    #: Its position among the front-end job's jointly trained classifiers.
    index: int


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
    #: The classifiers a defense that ``trains_classifier`` builds from scratch and trains with the front-end,
    #: one per guide, ordered by their dumps (so the guides' order in the matrix does not matter); None
    #: (absent) for every other defense.
    classifiers: list[JointClassifier] | None = None
    #: The content of the weights file the front-end is loaded from instead of trained (its path is only a
    #: location); None (absent) for a front-end the job builds or trains. A front-end trained from another
    #: one has that one's job as its last dep, which keys it; its config has nothing more.
    weights_sha256: str | None = None


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
    #: PREDICT's parameters, by which every answer of a pipeline whose front-end declares smoothing is judged
    #: (:mod:`bench.evaluation.judge`); None (absent) for every other pipeline.
    predict: SmoothedPredict | None = None


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


class CertifyImages(Record):
    """Which test images a certify job certifies, by position in the test split: every ``every``-th from the
    first, or the start of the permutation seeded ``seed`` that evaluation subsets take
    (:func:`bench.data.splits.eval_subset`); at most ``count`` (None: as many as there are)."""

    every: int | None = None
    seed: int | None = None
    count: int | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> CertifyImages:
        if (self.every is None) == (self.seed is None):
            raise ValueError("a certify job's images are strided (every) or a seeded subset (seed), not both")
        return self


class CertifyJobConfig(JobConfig):
    """Cohen et al.'s CERTIFY on every selected image, for the pipeline of its deps (front-end, target)."""

    job_kind: ClassVar[JobKind] = "certify"
    #: Bumped when the job's code changes what it computes for the same config.
    version: int
    #: The front-end's declared smoothing (also in its params; here so a row reads without its upstream).
    sigma: float
    noise_space: NoiseSpace
    #: The std the front-end normalizes with, when it declares its own (:attr:`GaussianSmoothing.std`); None
    #: (absent from the key): the classifier's normalization scales normalized-space noise.
    noise_std: list[float] | None = None
    n0: int
    n: int
    alpha: float
    noise_batch: int
    #: Seeds the noise of each image from (seed, its test-split position).
    seed: int
    images: CertifyImages
    #: Pixel-space l2 radii the job reports certified accuracy at.
    radii: list[float]
