"""The matrix file's schema (pydantic), validated completely before any work starts.

Structural problems (wrong types, unknown keys, missing fields) are caught by the models; semantic ones
(unknown registry names, classifier/dataset mismatches, epsilons out of range, dangling references) by
:mod:`bench.validate`. Both report the file, the key path, what was expected and, for names, the closest
valid ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.errors import ConfigError
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

    @model_validator(mode="after")
    def _one_origin(self) -> ClassifierConfig:
        if self.weights and self.source:
            raise ValueError("give weights (a local file) or source (a registered loader), not both")
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


class MatrixConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    #: Free-text statement of what was reduced; the harness adds what it detects itself.
    scale: str | None = None
    classifiers: dict[str, ClassifierConfig] = Field(min_length=1)
    defenses: dict[str, DefenseConfig] = Field(min_length=1)
    threats: dict[str, ThreatConfig] = Field(min_length=1)
    #: A custom attack set; omitted, every cell runs the standard protocol (``evaluation.protocol``).
    attacks: dict[str, AttackConfig] | None = Field(None, min_length=1)
    evaluation: EvaluationConfig = EvaluationConfig()
    #: When present, every evaluated pipeline is also scored on corrupted copies of its evaluation images.
    corruptions: CorruptionConfig | None = None
    experiments: list[Experiment] = Field(min_length=1)

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
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the matrix file ({exc.strerror})") from exc
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        loc = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: malformed YAML{loc}: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse_matrix(raw, str(path))


def parse_matrix(raw: dict[str, Any], source: str) -> MatrixConfig:
    try:
        return MatrixConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def format_validation_error(
    exc: ValidationError,
    source: str,
    prefix: tuple[str | int, ...] = (),
    model: type[BaseModel] | None = None,
) -> str:
    """One line per problem. With ``model`` (the schema of a flat parameter block), an unknown key also
    names the closest valid keys, since a misspelt parameter is the usual cause."""
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
    return "\n".join(lines)


def _key_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("native", "cross-model", "cross-dataset", "ensemble-size"):
            continue  # pydantic's union tag, not a key the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"
