"""The matrix file's schema (pydantic), validated completely before any work starts.

Structural problems (wrong types, unknown keys, missing fields) are caught by the models; semantic ones
(unknown registry names, classifier/dataset mismatches, epsilons out of range, dangling references) by
:mod:`bench.validate`. Both report the file, the key path, what was expected and, for names, the closest
valid ones.
"""

from __future__ import annotations

import codecs
import difflib
import re
import unicodedata
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.api import GaussianSmoothing
from bench.certify.curve import check_radii
from bench.certify.params import DEFAULT_NOISE_BATCH, PRESETS, CertifyParams, check_alpha
from bench.errors import ConfigError, UnknownNameError
from bench.evaluation.standard import KNOWN_STANDARD_VERSIONS, STANDARD_PROTOCOL_VERSION


def _parse_fraction(v: Any) -> Any:
    """Accept ``8/255`` as well as ``0.0313...``: papers state radii both ways."""
    if isinstance(v, str):
        try:
            return float(Fraction(v.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"expected a number or a fraction like 8/255, got {v!r}") from None
    return v


Epsilon = Annotated[float, BeforeValidator(_parse_fraction)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: What the matrix's name and every label of a classifier, defense, threat or attack are made of. They reach
#: file names, HTML, job labels and the terminal, so only characters that mean nothing in any of them: no path
#: separator, no leading dot, no markup, no control character; ``+`` and ``:`` join guide sets and mark the
#: standard protocol's attacks in what the harness prints, so a label holding them would read as two things.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 64
NAME_RULE = (
    f"a name is 1 to {MAX_NAME_LENGTH} letters, digits, '_', '.' and '-', starting with a letter or digit, "
    "since it becomes part of file names, web pages and terminal output"
)


def check_name(value: str) -> str:
    if len(value) <= MAX_NAME_LENGTH and NAME_PATTERN.fullmatch(value):
        return value
    raise ValueError(f"{value!r} is not a valid name: {_name_problem(value)}; {NAME_RULE}")


def _name_problem(value: str) -> str:
    if not value:
        return "it is empty"
    control = next((ch for ch in value if is_control(ch)), None)
    if control is not None:
        return f"it holds the control character U+{ord(control):04X}"
    if "/" in value or "\\" in value:
        return "it holds a path separator"
    if len(value) > MAX_NAME_LENGTH:
        return f"it is {len(value)} characters long"
    if not NAME_PATTERN.fullmatch(value[0]):
        return f"it starts with {value[0]!r}"
    bad = next(ch for ch in value if not NAME_PATTERN.fullmatch(f"a{ch}"))
    return f"it holds {bad!r}"


def is_control(ch: str) -> bool:
    """A character that steers a terminal or reorders the text around it rather than showing itself: C0 and
    C1 controls (ESC starts the sequences that retitle a window or rewrite the screen, CR overwrites a line)
    and the bidirectional embeddings, overrides and isolates."""
    return unicodedata.category(ch) == "Cc" or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"


Name = Annotated[str, AfterValidator(check_name)]


class Normalization(Strict):
    mean: list[float]
    std: list[float]


#: Named normalizations for weights trained elsewhere (e.g. the akamaster CIFAR ResNets use ImageNet's).
NamedNormalization: dict[str, Normalization] = {
    "imagenet": Normalization(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
}


class ClassifierConfig(Strict):
    #: A registered architecture; may be omitted only for a ``source`` model, which brings its own.
    arch: str | None = None
    dataset: str
    seed: int = 0
    #: Local weights file (safetensors, or .pt/.pth/.th read with weights_only=True); no training then.
    #: ``{data_dir}`` expands to the data root; other relative paths are from the matrix file's folder.
    weights: str | None = None
    #: Where the weights come from when not a local file: a loader registered in ``classifiers``
    #: (e.g. ``robustbench:Carmon2019Unlabeled``, ``torchvision:resnet18``).
    source: str | None = None
    #: Mean/std applied inside the model: a name or explicit values. Unset, a trained classifier uses the
    #: dataset's statistics and a ``weights`` one those its file records; a file that records none needs it.
    normalization: Literal["dataset", "imagenet", "none"] | Normalization | None = None
    #: Training-recipe parameters, validated by the recipe the architecture names.
    train: dict[str, Any] = Field(default_factory=dict)
    #: A registered training recipe to use instead of the architecture's own (e.g. ``madry-at``); ``train``
    #: is then validated by it.
    recipe: str | None = None
    #: Local weights file the recipe trains on from, instead of a random initialization (fine-tuning, e.g.
    #: adversarial fine-tuning of a pre-trained model with ``madry-at``); read like ``weights``, including
    #: where the normalization comes from.
    init_weights: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ClassifierConfig:
        if self.weights and self.source:
            raise ValueError("give weights (a local file) or source (a registered loader), not both")
        if self.init_weights and (self.weights or self.source):
            raise ValueError(
                "init_weights starts training from a file, while weights and source load a finished model: "
                "give one of them"
            )
        if self.arch is None and self.source is None:
            raise ValueError("give arch (a registered architecture) or source (e.g. robustbench:Standard)")
        if self.source is not None:
            # A zoo model brings its architecture, weights and normalization; these would be ignored.
            ignored = [k for k in ("arch", "train", "recipe", "normalization") if k in self.model_fields_set]
            if ignored:
                raise ValueError(f"a source model brings its own architecture, weights and normalization; "
                                 f"remove {', '.join(ignored)}")
        return self


class DefenseConfig(Strict):
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    #: Training examples for the front-end (from the guides' training split); None = all.
    n_train: int | None = Field(None, ge=1)
    #: Images held out of that split for the front-end's validation (disjoint from its training images).
    n_val: int = Field(0, ge=0)
    #: Local file of a trained front-end (safetensors, or a pickle read with weights_only=True, as a
    #: classifier's ``weights``), loaded instead of training one: the front-end's own state dict, or, for a
    #: front-end whose weights all live in one wrapped network, that network's as its authors saved it
    #: (Salman et al.'s DnCNN ``checkpoint.pth.tar``). Keyed by content, and strictly loaded into the
    #: defense's architecture before any work. The experiments' guides then say what it was trained
    #: through, as the matrix states it.
    weights: str | None = None
    #: Another defense entry whose front-end this one starts its training from (fine-tuning): that entry's
    #: front-end job, for this one's guides unless ``init_guides`` names others, is an upstream job of this
    #: one, and its architecture must be this one's.
    init_from: str | None = None
    #: The guides of the ``init_from`` entry's front-end, when not this one's own.
    init_guides: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_origin(self) -> DefenseConfig:
        if self.weights is not None:
            trained = ("init_from", "init_guides", "n_train", "n_val")
            given = [k for k in trained if k in self.model_fields_set]
            if given:
                raise ValueError(f"a front-end loaded from weights is not trained: remove {', '.join(given)}")
        if self.init_guides is not None and self.init_from is None:
            raise ValueError("init_guides names the guides of the init_from front-end; give init_from too")
        return self


class ThreatConfig(Strict):
    norm: Literal["linf", "l2", "l1"]
    epsilons: list[Epsilon] = Field(min_length=1)


class AttackConfig(Strict):
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: On: BPDA through every part the defense declares non-differentiable. ``frontend``: the whole front-end
    #: straight-through (its output forward, the identity backward), which also gets through parts nobody
    #: declared. Off: attack the pipeline as written (gradients through non-differentiable parts are whatever
    #: autograd gives); only for demonstrating a naive evaluation, which the soundness checks flag.
    bpda: bool | Literal["frontend"] = True


class EvaluationConfig(Strict):
    #: Test examples per cell (a seeded, fixed subset of the test split); None = the whole test split.
    n_eval: int | None = Field(None, ge=1)
    seed: int = 0
    batch_size: int = Field(256, ge=1)
    #: EOT draws per gradient and majority-vote draws per final judgment, for randomized pipelines.
    eot_samples: int = Field(20, ge=1)
    vote_draws: int = Field(21, ge=1)
    #: Run the automatic soundness checks (FGSM comparison, epsilon sweep, doubled steps) on every cell.
    checks: bool = True
    #: Examples the soundness checks use (a prefix of the evaluation subset).
    n_checks: int = Field(200, ge=1)
    #: ``standard``: the harness's own attack set (:mod:`bench.evaluation.standard`), as a cascade;
    #: ``standard@N`` pins its version N. ``custom``: the matrix's ``attacks:`` block. Unset: standard
    #: when the matrix has no ``attacks:`` block, custom when it has one.
    protocol: str | None = None
    #: A custom attack set's cascade: these attacks, in this order, each run only on the examples every
    #: earlier one failed to break. Attacks not named here run side by side on every example.
    cascade: list[str] | None = Field(None, min_length=1)
    #: Reduced budgets for the standard protocol's attacks, for a run sized to a CPU: per attack label
    #: without its ``std:`` prefix (``autoattack``, ``pgd-ce``, ...), parameters merged over the protocol's.
    #: They enter the attack jobs' keys, and every row of the cell states the reduction as a scale note.
    standard_budget: dict[str, dict[str, Any]] | None = None

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str | None) -> str | None:
        if value is None or value == "custom":
            return value
        name, _, version = value.partition("@")
        if name != "standard" or (version and not version.isdigit()):
            raise ValueError(f"expected standard, standard@N or custom, got {value!r}")
        if version and int(version) not in KNOWN_STANDARD_VERSIONS:
            known = ", ".join(f"standard@{v}" for v in KNOWN_STANDARD_VERSIONS)
            raise ValueError(
                f"this Frontline runs standard protocol version(s) {known}, not {value!r}; run the matrix "
                "with the Frontline release that defines it, or pin a version this one knows"
            )
        return value


class CorruptionConfig(Strict):
    """Common-corruption evaluation (Hendrycks & Dietterich's 15 corruptions x 5 severities, generated)."""

    names: list[str] | Literal["all"] = "all"
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    seed: int = 0


#: Pixel-space l2 radii a certification reports unless told otherwise: the steps of Cohen et al.'s and
#: Salman et al.'s tables.
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
#: CERTIFY's estimation draws at full scale (Cohen et al. 2019); a run with fewer is reduced.
FULL_SCALE_N = 100_000


class CertifyConfig(Strict):
    """Randomized-smoothing certification (Cohen et al. 2019's CERTIFY) of every evaluated pipeline whose
    front-end declares Gaussian smoothing: one ``certify`` job per (front-end, target, σ).

    A ``preset`` is a paper's protocol and fixes n0, n, alpha and the images; giving any of those beside it
    is refused rather than letting either side win silently, since the rows would carry the preset's name
    without following it. ``noise_batch``, ``radii`` and ``seed`` combine with a preset.
    """

    #: Plan every smoothing defense of the matrix once per σ, with its parameter ``sigma`` set to it (so a
    #: defense trained for σ is trained once per σ). Omitted: each defense's own declared σ.
    sigmas: list[float] | None = Field(None, min_length=1)
    #: A protocol of :data:`bench.certify.PRESETS` (``salman``: n0=100, n=10,000, alpha=0.001, every 20th
    #: test image, at most 500).
    preset: str | None = None
    #: Selection draws, estimation draws and failure probability; unset: 100, 100,000 and 0.001 (Cohen).
    n0: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1)
    alpha: float | None = None
    #: Noise draws classified per forward pass. It decides how the draws are split among calls to the
    #: generator, so it enters the job key.
    noise_batch: int = Field(DEFAULT_NOISE_BATCH, ge=1)
    #: The images certified. ``every``: every k-th test image from the first, at most ``n_images``.
    #: ``n_images`` alone: the first n of the evaluation's seeded permutation (``evaluation.seed``), so they
    #: are the attack jobs' images when ``n_images`` is ``evaluation.n_eval``. Neither: the attack jobs'
    #: images (``evaluation.n_eval``), so certified and empirical outcomes pair example by example.
    n_images: int | None = Field(None, ge=1)
    every: int | None = Field(None, ge=1)
    #: l2 radii in [0,1] pixel space at which certified accuracy is reported.
    radii: list[float] = Field(default_factory=lambda: list(DEFAULT_RADII), min_length=1)
    #: Seeds the noise: image i's draws come from (seed, i) alone, whatever else is certified.
    seed: int = 0

    @field_validator("sigmas")
    @classmethod
    def _sigmas(cls, values: list[float] | None) -> list[float] | None:
        for s in values or []:
            _as_value_error(partial(GaussianSmoothing, s))
        _no_repeats("sigma", values or [])
        return values

    @field_validator("radii")
    @classmethod
    def _radii(cls, values: list[float]) -> list[float]:
        _as_value_error(lambda: check_radii(values))
        _no_repeats("radius", values)
        return values

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float | None) -> float | None:
        if value is not None:
            _as_value_error(lambda: check_alpha(value))
        return value

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(str(UnknownNameError("certify preset", value, PRESETS)))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CertifyConfig:
        if self.preset is not None:
            given = [k for k in ("n0", "n", "alpha", "n_images", "every") if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"preset {self.preset!r} fixes n0, n, alpha and the images "
                    f"({PRESETS[self.preset].source}); remove {', '.join(given)}, or drop the preset and "
                    "set them all yourself"
                )
        _as_value_error(lambda: self.params)
        return self

    @property
    def params(self) -> CertifyParams:
        """n0, n and alpha from the preset, else as given over Cohen et al.'s defaults."""
        if self.preset is not None:
            p = PRESETS[self.preset].params
            return CertifyParams(p.n0, p.n, p.alpha, self.noise_batch)
        default = CertifyParams()
        return CertifyParams(
            self.n0 if self.n0 is not None else default.n0,
            self.n if self.n is not None else default.n,
            self.alpha if self.alpha is not None else default.alpha,
            self.noise_batch,
        )

    @property
    def stride(self) -> tuple[int, int | None] | None:
        """(every, at most) for a strided selection of test images (a preset's or ``every``), else None."""
        if self.preset is not None:
            preset = PRESETS[self.preset]
            return preset.every, preset.count
        return (self.every, self.n_images) if self.every is not None else None


def _as_value_error(check: Callable[[], object]) -> None:
    """Run one of the certification engine's own checks, so the matrix is held to the same rule with the
    same words; pydantic reports only a ValueError as a problem with the key."""
    try:
        check()
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _no_repeats(what: str, values: list[float]) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"each {what} is listed once; {repeated} repeat")


class _Experiment(Strict):
    defenses: list[str] = Field(min_length=1)
    threats: list[str] | None = None
    attacks: list[str] | None = None


class _GuidedExperiment(_Experiment):
    """An experiment that names its guides: one guide set, or several that each train a front-end."""

    guides: list[str] | None = None
    guide_sets: list[list[str]] | None = None

    @model_validator(mode="after")
    def _one_guide_field(self) -> _GuidedExperiment:
        if (self.guides is None) == (self.guide_sets is None):
            raise ValueError("give either guides (one guide set) or guide_sets (a list of them)")
        for s in [self.guides] if self.guides is not None else self.guide_sets or []:
            if not s:
                raise ValueError("a guide set must name at least one classifier")
        return self


class NativeExperiment(_GuidedExperiment):
    """Front-ends evaluated on the classifiers they were trained with."""

    kind: Literal["native"]


class CrossModelExperiment(_GuidedExperiment):
    """Front-ends trained with guides G, evaluated on other classifiers T of the same dataset."""

    kind: Literal["cross-model"]
    targets: list[str] = Field(min_length=1)


class CrossDatasetExperiment(_GuidedExperiment):
    """Front-ends trained with guides of dataset A, applied unchanged before classifiers of dataset B."""

    kind: Literal["cross-dataset"]
    targets: list[str] = Field(min_length=1)


class EnsembleSizeExperiment(_Experiment):
    """Front-ends trained on m guides drawn from a pool, for each m, evaluated on held-out targets."""

    kind: Literal["ensemble-size"]
    pool: list[str] = Field(min_length=1)
    sizes: list[int] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    #: Independent draws of the m guides per size.
    draws: int = Field(1, ge=1)
    seed: int = 0


Experiment = Annotated[
    NativeExperiment | CrossModelExperiment | CrossDatasetExperiment | EnsembleSizeExperiment,
    Field(discriminator="kind"),
]


#: What a paper's number measured: clean accuracy, robust accuracy (the worst case over the cell's attacks,
#: or one ``attack``'s own number) or certified accuracy at an l2 ``radius``.
PaperMetric = Literal["clean", "robust", "certified"]
#: The fields a table, a row and a column share; together they name one cell of the matrix.
PAPER_FIELDS = ("defense", "guides", "m", "target", "threat", "eps", "attack", "metric", "radius", "sigma")


class PaperSelector(Strict):
    """Part of what picks the matrix's number for one entry of a paper's table, in the matrix's own names.

    A paper lays its tables out along two axes (defenses down, targets across; ensemble sizes down, targets
    across; defenses down, radii across), so a row gives some fields, a column others and the table the ones
    every entry shares. A row or column may override the table; a row and a column may not both give one
    field, since the entry they cross would then say two things.
    """

    #: A defense of the matrix (``none`` for the undefended row).
    defense: str | None = None
    #: The front-end's guide set; omitted, the defense's only guide set for the target.
    guides: list[str] | None = Field(None, min_length=1)
    #: Ensemble size of an ensemble-size experiment: the number is the mean over its draws of guide sets.
    m: int | None = Field(None, ge=1)
    #: A classifier of the matrix the pipeline ends in.
    target: str | None = None
    #: A threat of the matrix; omitted, the matrix's only threat.
    threat: str | None = None
    #: A radius of the threat; omitted, its only one.
    eps: Epsilon | None = None
    #: One attack's own robust accuracy instead of the worst case over all of the cell's attacks.
    attack: str | None = None
    metric: PaperMetric | None = None
    #: A radius of ``certify.radii`` (l2, [0,1] pixel space), for ``metric: certified``.
    radius: float | None = Field(None, ge=0)
    #: The noise level of a certified pipeline; omitted, the best over the certified sigmas at that radius
    #: (as Salman et al. 2020 report it).
    sigma: float | None = Field(None, gt=0)

    @property
    def measured(self) -> PaperMetric:
        """The metric, which defaults to certified accuracy where a radius is given, else robust accuracy."""
        if self.metric is not None:
            return self.metric
        return "certified" if self.radius is not None else "robust"

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PAPER_FIELDS if getattr(self, name) is not None}


class PaperRow(PaperSelector):
    #: The row's label as the paper prints it.
    label: str


class PaperColumn(PaperSelector):
    #: The column's label as the paper prints it.
    label: str
    #: A header over adjacent columns with the same group (Cann et al.'s guides "inc." and "exc.").
    group: str | None = None


class PaperTable(PaperSelector):
    """One table of a paper: its rows and columns, and its numbers as printed (percent)."""

    title: str
    #: Where the table is from, when not the paper block's ``source``.
    source: str | None = None
    rows: list[PaperRow] = Field(min_length=1)
    columns: list[PaperColumn] = Field(min_length=1)
    #: One list per row, one entry per column: the paper's accuracy in percent; null where it gives none.
    numbers: list[list[float | None]]

    @model_validator(mode="after")
    def _consistent(self) -> PaperTable:
        if len(self.numbers) != len(self.rows):
            raise ValueError(f"numbers has {len(self.numbers)} row(s) but the table {len(self.rows)}")
        for i, values in enumerate(self.numbers):
            if len(values) != len(self.columns):
                raise ValueError(
                    f"numbers[{i}] (row {self.rows[i].label!r}) has {len(values)} entries but the table "
                    f"{len(self.columns)} columns"
                )
            outside = [v for v in values if v is not None and not 0 <= v <= 100]
            if outside:
                raise ValueError(f"numbers[{i}]: accuracies are percentages in [0, 100], got {outside}")
        for row in self.rows:
            for column in self.columns:
                both = sorted(row.given().keys() & column.given().keys())
                if both:
                    raise ValueError(
                        f"row {row.label!r} and column {column.label!r} both give {', '.join(both)}; give "
                        "each field on one axis (or on the table)"
                    )
        return self

    def selector(self, row: int, column: int) -> PaperSelector:
        """What the entry at (row, column) measured: the table's fields under the row's and column's."""
        fields = {**self.given(), **self.rows[row].given(), **self.columns[column].given()}
        return PaperSelector.model_validate(fields)


class PaperConfig(Strict):
    """A paper's tables, to print beside the matrix's own numbers (``bench report``)."""

    #: The paper, e.g. "Cann et al. 2022".
    source: str
    tables: list[PaperTable] = Field(min_length=1)


class MatrixConfig(Strict):
    name: Name
    description: str = ""
    #: Free-text statement of what was reduced, shown in the report and ``bench run``'s summary; the harness
    #: adds what it detects itself.
    scale: str | None = None
    classifiers: dict[Name, ClassifierConfig] = Field(min_length=1)
    defenses: dict[Name, DefenseConfig] = Field(min_length=1)
    threats: dict[Name, ThreatConfig] = Field(min_length=1)
    #: A custom attack set; omitted, every cell runs the standard protocol (``evaluation.protocol``).
    attacks: dict[Name, AttackConfig] | None = Field(None, min_length=1)
    evaluation: EvaluationConfig = EvaluationConfig()
    #: When present, every evaluated pipeline is also scored on corrupted copies of its evaluation images.
    corruptions: CorruptionConfig | None = None
    #: When present, every evaluated pipeline whose front-end declares smoothing is also certified.
    certify: CertifyConfig | None = None
    experiments: list[Experiment] = Field(min_length=1)
    #: A paper's tables with its numbers, which the report prints beside the matrix's own.
    paper: PaperConfig | None = None

    @property
    def standard_protocol(self) -> int | None:
        """The standard protocol version the cells run, or None for the matrix's own (custom) attack set."""
        protocol = self.evaluation.protocol
        if protocol is None:
            return STANDARD_PROTOCOL_VERSION if self.attacks is None else None
        if protocol == "custom":
            return None
        _, _, version = protocol.partition("@")
        return int(version) if version else STANDARD_PROTOCOL_VERSION

    @property
    def cumulative(self) -> bool:
        """Whether a cell also counts the adversarial examples its pipeline's attacks found at the threat's
        smaller radii (robust accuracy cannot rise with epsilon): under the standard protocol and in a
        custom cascade. A custom set run side by side keeps the cells (and job keys) it always had."""
        return self.standard_protocol is not None or self.evaluation.cascade is not None


def resolve_path(raw: str, base_dir: Path, data_root: Path) -> Path:
    """A matrix file's path: ``{data_dir}`` expands to the data root; relative paths are from the file."""
    expanded = Path(raw.replace("{data_dir}", str(data_root))).expanduser()
    return (expanded if expanded.is_absolute() else base_dir / expanded).resolve()


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]  # Any without types-PyYAML
    """Refuses a key given twice in one mapping, where PyYAML would silently keep only the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_line: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            # Scalar keys (all a matrix file has) compare as written, with their resolved tag; ``<<: *anchor``
            # merges are meant to be overridden by the mapping's own keys.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in first_line:
                problem = f"duplicate key {key_node.value!r} (first given at line {first_line[key]})"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_matrix(path: str | Path) -> MatrixConfig:
    """Parse and structurally validate a matrix file; every problem becomes one :class:`ConfigError`."""
    return parse_matrix(read_matrix(path), str(path))


#: More values than any matrix file holds once its aliases are expanded; far fewer than a "billion laughs"
#: (aliases of aliases of lists, each expanding nine-fold), which would exhaust memory wherever the matrix is
#: walked (validation, hashing into job keys, storing it with its run).
MAX_VALUES = 100_000
#: Deeper than any matrix nests (a paper table's numbers are five levels down).
MAX_DEPTH = 32
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
#: The values YAML's safe loader may give that a matrix holds: JSON's, since the matrix is stored and hashed
#: as JSON. Dates, ``!!binary`` and ``!!set`` have no meaning in a matrix and are refused by name.
_PLAIN = (str, int, float, bool, type(None), dict, list)


def read_matrix(path: str | Path) -> dict[str, Any]:
    """A matrix file's YAML as plain data, or a :class:`ConfigError` saying why the file is not a matrix's:
    unreadable, not UTF-8 text, malformed YAML, a Python or other unknown tag (only the safe loader's tags
    are constructed), a node that expands past :data:`MAX_VALUES` values through aliases or nests past
    :data:`MAX_DEPTH`, a value JSON has no type for, or a control character anywhere."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the matrix file ({exc.strerror})") from exc
    text = _decode(path, data)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        loc = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
            problem += " (a matrix is plain data: the safe loader builds no Python or other tagged objects)"
        raise ConfigError(f"{path}: malformed YAML{loc}: {problem}") from exc
    except RecursionError:
        raise ConfigError(
            f"{path}: the YAML nests deeper than a matrix file can (over {MAX_DEPTH} levels)"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    _check_tree(raw, str(path))
    return raw


def _decode(path: Path, data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise ConfigError(f"{path}: the file is {encoding} text; save it as UTF-8 (a matrix file is "
                              "YAML in UTF-8)")
    if b"\0" in data:
        raise ConfigError(f"{path}: the file holds NUL bytes, so it is binary or UTF-16/32 text, not a "
                          "matrix file (YAML in UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 text (byte {exc.start}: {exc.reason}); save the "
                          "file as UTF-8, or check that it is the matrix file (YAML) at all") from None


def _check_tree(raw: dict[str, Any], source: str) -> None:
    """Walks the loaded YAML once, counting each aliased node as often as it is used (memoized, so a bomb
    is measured without being expanded), and lists every unsuitable value and control character."""
    problems: list[str] = []
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def text(value: str, loc: tuple[Any, ...], what: str, allowed: str) -> None:
        bad = next((ch for ch in value if is_control(ch) and ch not in allowed), None)
        if bad is not None:
            problems.append(f"{source}: {_key_path(loc)}: {what} holds the control character "
                            f"U+{ord(bad):04X}, which a terminal would obey rather than show; remove it")

    def walk(node: Any, loc: tuple[Any, ...]) -> int:
        if isinstance(node, str):
            text(node, loc, "the value", "\n\t")
            return 1
        if not isinstance(node, _PLAIN):
            problems.append(f"{source}: {_key_path(loc)}: a {type(node).__name__} is not a matrix value "
                            "(numbers, text, true/false, null, lists and mappings are); quote it for text")
            return 1
        if not isinstance(node, dict | list):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise ConfigError(f"{source}: {_key_path(loc)}: an alias refers to a node that holds it, so the "
                              "matrix would be infinite")
        if len(loc) > MAX_DEPTH:
            raise ConfigError(f"{source}: {_key_path(loc)}: nests deeper than a matrix file can (over "
                              f"{MAX_DEPTH} levels)")
        open_nodes.add(id(node))
        total = 1
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(node, dict) and isinstance(key, str):
                text(key, (*loc, key), "the key", "")
            elif isinstance(node, dict) and not isinstance(key, int | float | bool | None):
                problems.append(f"{source}: {_key_path(loc)}: a {type(key).__name__} is not a key")
            total += walk(value, (*loc, key))
            if total > MAX_VALUES:
                raise ConfigError(
                    f"{source}: {_key_path(loc)}: expands to more than {MAX_VALUES:,} values through YAML "
                    "aliases (an alias bomb); a matrix file holds far fewer"
                )
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    walk(raw, ())
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))


def parse_matrix(raw: dict[str, Any], source: str) -> MatrixConfig:
    try:
        return MatrixConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


#: Sections of labelled entries, and what :class:`UnknownNameError` calls one of their labels.
LABELLED = {"classifiers": "classifier", "defenses": "defense", "threats": "threat", "attacks": "attack"}
#: Blocks whose settings are independent of each other: a wrong one is left out, the rest still checked.
_SETTINGS = ("evaluation", "certify", "corruptions")
_REQUIRED = ("classifiers", "defenses", "threats", "experiments")


@dataclass(frozen=True)
class Salvage:
    """What remains of a matrix that failed its schema once every wrong part is left out, so the rules can
    still be checked on the rest and every problem reported in one pass: the matrix, the labels of the
    entries left out (as ``(kind, label)``: a reference to one of them is not reported again as unknown),
    the original position of each experiment kept, and the dotted paths of the settings and blocks left out
    (``evaluation.protocol``, ``paper``)."""

    matrix: MatrixConfig
    labels: frozenset[tuple[str, str]]
    experiments: tuple[int, ...]
    settings: frozenset[str]


def salvage(raw: dict[str, Any], exc: ValidationError, rounds: int = 8) -> Salvage | None:
    """Leaves out, for each schema error, the smallest part that holds it and can be left out without
    inventing anything (a labelled entry, an experiment, a setting, an optional block) and validates again,
    a few rounds; None where a required part is wrong itself (no classifiers, say): nothing is left to check.
    ``raw`` is not changed: parts are copied before one of their keys is removed, since aliases share them."""
    work = dict(raw)
    experiments = raw.get("experiments")
    kept = list(range(len(experiments))) if isinstance(experiments, list) else []
    labels: set[tuple[str, str]] = set()
    settings: set[str] = set()
    for _ in range(rounds):
        cut = {kept[int(loc[1])] for loc in _locs(exc) if _is_experiment(loc, kept)}
        for loc in _locs(exc):
            if not _is_experiment(loc, kept) and not _leave_out(work, loc, labels, settings):
                return None
        kept = [i for i in kept if i not in cut]
        if isinstance(experiments, list):
            work["experiments"] = [experiments[i] for i in kept]
        try:
            matrix = MatrixConfig.model_validate(work)
        except ValidationError as again:
            exc = again
            continue
        return Salvage(matrix, frozenset(labels), tuple(kept), frozenset(settings))
    return None


def _locs(exc: ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(err["loc"]) for err in exc.errors()]


def _is_experiment(loc: tuple[str | int, ...], kept: list[int]) -> bool:
    return len(loc) >= 2 and loc[0] == "experiments" and isinstance(loc[1], int) and loc[1] < len(kept)


def _leave_out(
    work: dict[str, Any], loc: tuple[str | int, ...], labels: set[tuple[str, str]], settings: set[str]
) -> bool:
    head = loc[0]
    block = work.get(str(head))
    if head in LABELLED and len(loc) >= 2 and isinstance(block, dict) and loc[1] in block:
        work[str(head)] = {k: v for k, v in block.items() if k != loc[1]}
        labels.add((LABELLED[str(head)], str(loc[1])))
        return True
    if head in _SETTINGS and len(loc) >= 2 and isinstance(block, dict) and loc[1] in block:
        work[str(head)] = {k: v for k, v in block.items() if k != loc[1]}
        settings.add(f"{head}.{loc[1]}")
        return True
    if head == "name":
        work["name"] = "matrix"  # named nowhere else; a placeholder only so the rest can be checked
        return True
    if head in work and head not in _REQUIRED:
        del work[str(head)]
        settings.add(str(head))
        return True
    return False


def format_validation_error(
    exc: ValidationError,
    source: str,
    prefix: tuple[str | int, ...] = (),
    model: type[BaseModel] | None = None,
) -> str:
    """One line per problem. With ``model`` (the schema of a flat parameter block), an unknown key also
    names the closest valid keys, since a misspelt parameter is the usual cause."""
    return "\n".join(validation_problems(exc, source, prefix, model))


def validation_problems(
    exc: ValidationError,
    source: str,
    prefix: tuple[str | int, ...] = (),
    model: type[BaseModel] | None = None,
) -> list[str]:
    """:func:`format_validation_error`'s lines."""
    lines = []
    for err in exc.errors():
        loc = _key_path(prefix + tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema)"
            if model is not None and len(err["loc"]) == 1:
                valid = sorted(model.model_fields)
                close = difflib.get_close_matches(str(err["loc"][0]), valid, n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
                msg += f"; {hint}(valid: {', '.join(valid)})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        expected = err.get("ctx", {}).get("expected")
        if expected and "expected" not in msg.lower() and str(expected) not in msg:
            msg += f" (expected {expected})"
        got = err.get("input")
        if err["type"] not in ("missing",) and not isinstance(got, dict | list) and repr(got) not in msg:
            msg += f"; got {got!r}"
        lines.append(f"{source}: {loc}: {msg}")
    return lines


#: A key printed as written; any other is printed as a Python literal, so that one holding a control
#: character, a dot or nothing at all reads as one key and cannot steer the terminal.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_:+@-][A-Za-z0-9_.:+@-]*")


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif part in ("native", "cross-model", "cross-dataset", "ensemble-size", "[key]"):
            continue  # pydantic's union tag or its mark of a dict key, not a key the user wrote
        else:
            shown = part if isinstance(part, str) and _PLAIN_KEY.fullmatch(part) else repr(part)
            out += f".{shown}" if out else shown
    return out or "(top level)"
