"""The one door a plug-in uses: every contract between Frontline's harness and the packages it runs.

Defenses, classifiers, attacks, datasets, model sources and soundness checks are written against these
names and nothing else of ``bench``; the harness, in turn, knows plug-ins only through the registries here.
A plug-in module registers its entries when imported, and every package (Frontline's built-ins included)
is imported through its ``frontline.*`` entry point, so a third-party package is a peer of the built-ins.
"""

from bench.api.attack import ATTACKS, Attack, AttackParams, register_attack
from bench.api.batches import ShuffledBatches
from bench.api.checkpoints import Checkpoint, Checkpoints
from bench.api.checks import (
    ATTACK_CHECKS,
    BASIC_CHECKS,
    AttackEvidence,
    CellEvidence,
    Check,
    CheckResult,
    register_check,
    worst_case,
)
from bench.api.classifier import (
    CLASSIFIERS,
    ArchSpec,
    Classifier,
    build_classifier,
    count_correct,
    freeze,
    register_classifier,
)
from bench.api.context import JobContext, Progress
from bench.api.data import DatasetInfo, ImageData, content_hash
from bench.api.datasets import DATASETS, DatasetSource, dataset_info, register_dataset
from bench.api.defense import DEFENSES, Defense, DefenseParams, register_defense
from bench.api.frontend import FrontEnd, Identity, NonDifferentiable, StraightThrough, set_bpda
from bench.api.losses import LOSSES, cross_entropy, dlr, margin
from bench.api.pipeline import NO_MAJORITY, BpdaMode, LossFn, Pipeline
from bench.api.recipe import RECIPES, Recipe, RecipeParams, register_recipe
from bench.api.registry import Entry, Registry, load_plugins
from bench.api.resume import Stateful, TrainingState
from bench.api.smoothing import NOISE_SPACES, GaussianSmoothing, NoiseSpace
from bench.api.sources import (
    SOURCE_CHECKS,
    SOURCES,
    LoadOptions,
    SourceCheck,
    SourceLoader,
    check_external,
    load_external,
    parse_source,
)
from bench.api.steps import random_start, step_direction
from bench.api.threat import BALL_SLACK, NORMS, Norm, Threat, max_radius
from bench.api.weights import (
    load_classifier_weights,
    load_into,
    load_state_dict_file,
    refusal_reason,
    saved_normalization,
    sha256_file,
    unwrap_state_dict,
)
from bench.errors import BenchError, ConfigError, EvaluationError, UnknownNameError, WeightsError

__all__ = [
    "ATTACKS",
    "ATTACK_CHECKS",
    "BALL_SLACK",
    "BASIC_CHECKS",
    "CLASSIFIERS",
    "DATASETS",
    "DEFENSES",
    "LOSSES",
    "NOISE_SPACES",
    "NORMS",
    "NO_MAJORITY",
    "RECIPES",
    "SOURCES",
    "SOURCE_CHECKS",
    "ArchSpec",
    "Attack",
    "AttackEvidence",
    "AttackParams",
    "BenchError",
    "BpdaMode",
    "CellEvidence",
    "Check",
    "CheckResult",
    "Checkpoint",
    "Checkpoints",
    "Classifier",
    "ConfigError",
    "DatasetInfo",
    "DatasetSource",
    "Defense",
    "DefenseParams",
    "Entry",
    "EvaluationError",
    "FrontEnd",
    "GaussianSmoothing",
    "Identity",
    "ImageData",
    "JobContext",
    "LoadOptions",
    "LossFn",
    "NoiseSpace",
    "NonDifferentiable",
    "Norm",
    "Pipeline",
    "Progress",
    "Recipe",
    "RecipeParams",
    "Registry",
    "SourceCheck",
    "SourceLoader",
    "ShuffledBatches",
    "Stateful",
    "StraightThrough",
    "Threat",
    "TrainingState",
    "UnknownNameError",
    "WeightsError",
    "build_classifier",
    "check_external",
    "content_hash",
    "count_correct",
    "cross_entropy",
    "dataset_info",
    "dlr",
    "freeze",
    "load_classifier_weights",
    "load_external",
    "load_into",
    "load_plugins",
    "load_state_dict_file",
    "margin",
    "max_radius",
    "parse_source",
    "random_start",
    "refusal_reason",
    "register_attack",
    "register_check",
    "register_classifier",
    "register_dataset",
    "register_defense",
    "register_recipe",
    "saved_normalization",
    "set_bpda",
    "sha256_file",
    "step_direction",
    "unwrap_state_dict",
    "worst_case",
]
