"""Semantic validation of a matrix: everything that can be known wrong before any work starts.

All problems are collected and reported together, each with the file, the key path and what was expected, so
a user fixes a matrix in one pass instead of one error per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from bench.api import (
    ATTACKS,
    CLASSIFIERS,
    DATASETS,
    DEFENSES,
    RECIPES,
    SOURCES,
    build_classifier,
    check_external,
    freeze,
    load_plugins,
    load_state_dict_file,
    max_radius,
    saved_normalization,
)
from bench.attacks.pgd import FGSMParams, PGDParams
from bench.config import (
    ClassifierConfig,
    CrossDatasetExperiment,
    CrossModelExperiment,
    EnsembleSizeExperiment,
    Experiment,
    MatrixConfig,
    NativeExperiment,
    format_validation_error,
    resolve_path,
)
from bench.data.corruptions import CORRUPTIONS, SEVERITIES, SUPPORTED_SHAPES
from bench.errors import BenchError, ConfigError, UnknownNameError, WeightsError


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = f"{self.source}: {path}: {message}"
        if line not in self.lines:  # e.g. a radius too large for every experiment that uses its threat
            self.lines.append(line)

    def name(self, path: str, kind: str, name: str, valid: Iterable[str]) -> bool:
        valid = list(valid)
        if name in valid:
            return True
        self.add(path, str(UnknownNameError(kind, name, valid)))
        return False

    def params(self, path: str, model: type[BaseModel], values: dict[str, Any]) -> BaseModel | None:
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            prefix = tuple(path.split("."))
            self.lines.append(format_validation_error(exc, self.source, prefix, model))
            return None

    def raise_if_any(self) -> None:
        if self.lines:
            n = len(self.lines)
            head = f"the matrix has {n} problem{'s' if n > 1 else ''}:\n" if n > 1 else ""
            raise ConfigError(head + "\n".join(self.lines))


def validate_matrix(matrix: MatrixConfig, source: str, base_dir: Path, data_root: Path) -> None:
    load_plugins()
    p = Problems(source)
    shapes: dict[str, tuple[int, int, int]] = {}
    for label, c in matrix.classifiers.items():
        shape = _check_classifier(p, f"classifiers.{label}", c, base_dir, data_root)
        if shape is not None:
            shapes[label] = shape
    for label, d in matrix.defenses.items():
        path = f"defenses.{label}"
        if p.name(f"{path}.kind", "defense", d.kind, DEFENSES.names()):
            p.params(f"{path}.params", DEFENSES.get(d.kind).Params, d.params)
    _check_protocol(p, matrix)
    for label, a in (matrix.attacks or {}).items():
        path = f"attacks.{label}"
        if p.name(f"{path}.kind", "attack", a.kind, ATTACKS.names()):
            p.params(f"{path}.params", ATTACKS.get(a.kind).Params, a.params)
    for label, t in matrix.threats.items():
        for i, eps in enumerate(t.epsilons):
            if not eps > 0:
                p.add(
                    f"threats.{label}.epsilons[{i}]",
                    f"epsilon must be > 0 (clean accuracy is always reported), got {eps}",
                )
    if matrix.corruptions is not None:
        _check_corruptions(p, matrix, shapes)
    for i, exp in enumerate(matrix.experiments):
        _check_experiment(p, f"experiments[{i}]", exp, matrix, shapes)
    p.raise_if_any()


def _check_protocol(p: Problems, matrix: MatrixConfig) -> None:
    """The standard protocol brings its own attacks, so a matrix that also names some is ambiguous: refused
    rather than one side silently ignored. A cascade orders the matrix's own attacks, once each."""
    ev = matrix.evaluation
    attacks = matrix.attacks or {}
    if matrix.standard_protocol is not None:
        fix = "remove them to run the standard protocol, or set evaluation.protocol: custom to run only yours"
        if attacks:
            p.add("attacks", f"evaluation.protocol: {ev.protocol} runs the standard attack set, which an "
                             f"attacks: block would contradict; {fix}")
        for i, exp in enumerate(matrix.experiments):
            if exp.attacks:
                p.add(f"experiments[{i}].attacks", f"the matrix runs the standard protocol, whose attack set "
                                                   f"is fixed; {fix}")
        if ev.cascade is not None:
            p.add("evaluation.cascade", "the standard protocol cascades its own attacks in its own order; "
                                        "cascade orders a custom attack set (evaluation.protocol: custom)")
        return
    if not attacks:
        p.add("attacks", "evaluation.protocol: custom runs the matrix's own attacks, but it names none; add "
                         "an attacks: block, or remove protocol: custom to run the standard protocol")
    for j, name in enumerate(ev.cascade or []):
        if p.name(f"evaluation.cascade[{j}]", "attack", name, attacks) and (ev.cascade or []).index(name) < j:
            p.add(f"evaluation.cascade[{j}]", f"attack {name!r} is already in the cascade; each runs once")


def _check_corruptions(p: Problems, matrix: MatrixConfig, shapes: dict[str, tuple[int, int, int]]) -> None:
    c = matrix.corruptions
    assert c is not None
    if c.names != "all":
        for j, name in enumerate(c.names):
            p.name(f"corruptions.names[{j}]", "corruption", name, CORRUPTIONS)
    for j, s in enumerate(c.severities):
        if s not in SEVERITIES:
            p.add(f"corruptions.severities[{j}]", f"severity must be one of {list(SEVERITIES)}, got {s}")
    for label, shape in shapes.items():
        if shape not in SUPPORTED_SHAPES:
            p.add(
                "corruptions",
                f"classifier {label!r} takes images of shape {shape}; corruptions are defined for "
                f"{list(SUPPORTED_SHAPES)}",
            )


def _check_classifier(
    p: Problems, path: str, c: ClassifierConfig, base_dir: Path, data_root: Path
) -> tuple[int, int, int] | None:
    ok_data = p.name(f"{path}.dataset", "dataset", c.dataset, DATASETS.names())
    if c.source is not None:
        library = c.source.partition(":")[0]
        if p.name(f"{path}.source", "model source library", library, SOURCES.names()) and ok_data:
            try:
                check_external(c.source, DATASETS.get(c.dataset).info.num_classes)
            except BenchError as exc:
                p.add(f"{path}.source", str(exc))
        return DATASETS.get(c.dataset).info.input_shape if ok_data else None
    assert c.arch is not None
    ok_arch = p.name(f"{path}.arch", "classifier", c.arch, CLASSIFIERS.names())
    if not (ok_arch and ok_data):
        return None
    label = path.removeprefix("classifiers.")
    spec = CLASSIFIERS.get(c.arch)
    info = DATASETS.get(c.dataset).info
    problem = spec.compatibility_error(c.dataset, info.input_shape, info.num_classes)
    if problem:
        p.add(path, problem)
    if c.weights is not None:
        where = resolve_path(c.weights, base_dir, data_root)
        if not where.is_file():
            p.add(
                f"{path}.weights",
                f"weights file {str(where)!r} does not exist (relative paths are from the "
                "matrix file's folder; {data_dir} expands to the data root)",
            )
        elif c.normalization is None:
            try:
                if saved_normalization(load_state_dict_file(where)) is None:
                    p.add(f"{path}.normalization", unstated_normalization(label, c.dataset))
            except WeightsError as exc:
                p.add(f"{path}.weights", str(exc))
        if c.train:
            p.add(f"{path}.train", "a classifier loaded from weights is not trained: remove 'train'")
        if c.recipe is not None:
            p.add(f"{path}.recipe", "a classifier loaded from weights is not trained: remove 'recipe'")
    elif c.recipe is None and spec.recipe is None:
        p.add(
            path,
            f"classifier {label!r} cannot be trained: architecture {c.arch!r} has no training recipe (it is "
            "only loaded from weights); give weights: FILE",
        )
    else:
        recipe = c.recipe or spec.recipe
        assert recipe is not None
        named_at = f"{path}.recipe" if c.recipe is not None else f"{path}.arch"
        if p.name(named_at, "training recipe", recipe, RECIPES.names()):
            p.params(f"{path}.train", RECIPES.get(recipe).Params, c.train)
    return info.input_shape


def unstated_normalization(label: str, dataset: str) -> str:
    """Why a classifier whose weights record no normalization needs one stated, and the ways to state it."""
    return (
        f"classifier {label!r} is loaded from weights that do not record the normalization they were "
        f"trained with, and a wrong one ({dataset}'s mean/std before a network trained on raw [0,1] pixels, "
        "say) only shows as a weaker model; state the one it was trained with: normalization: {mean: [...], "
        f"std: [...]}}, normalization: dataset ({dataset}'s statistics), normalization: imagenet, or "
        "normalization: none (raw [0,1] pixels)"
    )


def _check_experiment(
    p: Problems, path: str, exp: Experiment, matrix: MatrixConfig, shapes: dict[str, tuple[int, int, int]]
) -> None:
    def names(field: str, kind: str, values: Iterable[str], valid: Iterable[str]) -> None:
        valid = list(valid)
        for j, v in enumerate(values):
            p.name(f"{path}.{field}[{j}]", kind, v, valid)

    names("defenses", "defense", exp.defenses, matrix.defenses)
    names("threats", "threat", exp.threats or [], matrix.threats)
    if matrix.attacks is not None:  # the standard protocol refuses experiments that name attacks
        names("attacks", "attack", exp.attacks or [], matrix.attacks)
    sets = guide_sets(exp)
    for j, s in enumerate(sets):
        names(
            f"guide_sets[{j}]" if getattr(exp, "guide_sets", None) else "guides",
            "classifier",
            s,
            matrix.classifiers,
        )
    targets = list(getattr(exp, "targets", []))
    names("targets", "classifier", targets, matrix.classifiers)
    # A repeat would train or count the same model twice (and an ensemble pool could never yield its draws).
    if isinstance(exp, EnsembleSizeExperiment):
        listed = [("pool", list(exp.pool))]
    else:
        field = "guide_sets[{}]" if getattr(exp, "guide_sets", None) else "guides"
        listed = [(field.format(j), list(s)) for j, s in enumerate(sets)]
    for field, values in [*listed, ("targets", targets)]:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            p.add(f"{path}.{field}", f"{', '.join(repeated)} listed more than once")
    if isinstance(exp, EnsembleSizeExperiment):
        names("pool", "classifier", exp.pool, matrix.classifiers)
        for j, m in enumerate(exp.sizes):
            if not 1 <= m <= len(exp.pool):
                p.add(
                    f"{path}.sizes[{j}]",
                    f"ensemble size must be between 1 and the pool size {len(exp.pool)}, got {m}",
                )
        overlap = sorted(set(exp.pool) & set(targets))
        if overlap:
            p.add(f"{path}.targets", f"targets must be held out of the pool; {overlap} are in both")
    known = set(matrix.classifiers)
    if not all(c in known for s in sets for c in s) or not all(t in known for t in targets):
        return
    ds = {label: matrix.classifiers[label].dataset for label in known}
    guide_ds = {ds[c] for s in sets for c in s}
    if len(guide_ds) > 1:
        p.add(path, f"all guides of an experiment must share one dataset, got {sorted(guide_ds)}")
        return
    target_ds = {ds[t] for t in targets}
    same_dataset = isinstance(exp, CrossModelExperiment | EnsembleSizeExperiment | NativeExperiment)
    if same_dataset and target_ds - guide_ds:
        p.add(
            f"{path}.targets",
            f"{exp.kind} targets must use the guides' dataset {sorted(guide_ds)}; got "
            f"{sorted(target_ds)} (use kind: cross-dataset)",
        )
    if isinstance(exp, CrossModelExperiment):
        both = sorted({c for s in sets for c in s} & set(targets))
        if both:
            p.add(f"{path}.targets", f"{both} are guides of this experiment; evaluate them with kind: native")
    if isinstance(exp, CrossDatasetExperiment):
        if target_ds & guide_ds:
            p.add(
                f"{path}.targets",
                f"cross-dataset targets must use another dataset than the guides ({sorted(guide_ds)})",
            )
        gshape = {shapes[c] for s in sets for c in s if c in shapes}
        for t in targets:
            if t in shapes and gshape and shapes[t] not in gshape:
                p.add(
                    f"{path}.targets",
                    f"target {t!r} takes inputs of shape {shapes[t]} but the front-end is "
                    f"trained on {sorted(gshape)}: a front-end is applied unchanged, so shapes must match",
                )
    _check_defenses_with_guides(p, path, exp, matrix, sets)
    _check_threat_attack_pairs(p, path, exp, matrix, [shapes[t] for t in _evaluated(exp) if t in shapes])


def _check_defenses_with_guides(
    p: Problems, path: str, exp: Experiment, matrix: MatrixConfig, sets: list[list[str]]
) -> None:
    """Ask each trainable defense whether it can train through each of the experiment's guide sets (guide
    layers it names, the guides' input shapes, the input size its network takes; see ``Defense.check``), on
    untrained guides of the same architectures: nothing is loaded or downloaded. Zoo models (``source``) are
    left out of the sets; an ensemble-size pool is asked as one set, since any of its draws may be trained."""
    skeletons: dict[str, nn.Module | None] = {}

    def skeleton(label: str) -> nn.Module | None:
        if label not in skeletons:
            c = matrix.classifiers[label]
            built = None  # a zoo model, or one whose problem is reported with the classifier
            if c.arch is not None and c.arch in CLASSIFIERS and c.dataset in DATASETS:
                info = DATASETS.get(c.dataset).info
                spec = CLASSIFIERS.get(c.arch)
                if spec.compatibility_error(c.dataset, info.input_shape, info.num_classes) is None:
                    built = freeze(build_classifier(c.arch, info.num_classes, info.mean, info.std))
            skeletons[label] = built
        return skeletons[label]

    for j, name in enumerate(exp.defenses):
        d = matrix.defenses.get(name)
        if d is None or d.kind not in DEFENSES or not DEFENSES.get(d.kind).trainable:
            continue
        cls = DEFENSES.get(d.kind)
        try:
            params = cls.Params.model_validate(d.params)
        except ValidationError:
            continue  # reported with the defense's parameters
        for s in sets:
            first = matrix.classifiers[s[0]].dataset
            if first not in DATASETS:
                continue
            guides = [g for g in map(skeleton, s) if g is not None]
            try:
                cls().check(params, DATASETS.get(first).info.input_shape, guides)
            except ConfigError as exc:
                p.add(f"{path}.defenses[{j}]", f"defense {name!r} ({d.kind}), guides {'+'.join(s)}: {exc}")


def _evaluated(exp: Experiment) -> list[str]:
    if isinstance(exp, NativeExperiment):
        return sorted({c for s in guide_sets(exp) for c in s})
    return list(exp.targets)


def _check_threat_attack_pairs(
    p: Problems,
    path: str,
    exp: Experiment,
    matrix: MatrixConfig,
    target_shapes: list[tuple[int, int, int]],
) -> None:
    threat_names = [t for t in (exp.threats or matrix.threats) if t in matrix.threats]
    attacks = matrix.attacks or {}  # the standard protocol leaves out the attacks a norm does not suit
    attack_names = [a for a in (exp.attacks or attacks) if a in attacks]
    for tn in threat_names:
        t = matrix.threats[tn]
        for i, eps in enumerate(t.epsilons):
            for shape in set(target_shapes):
                limit = max_radius(t.norm, shape)
                if eps > limit:
                    p.add(
                        f"threats.{tn}.epsilons[{i}]",
                        f"{t.norm} epsilon {eps} exceeds {limit:g}, the largest "
                        f"radius that constrains images of shape {shape} in [0,1]",
                    )
        for an in attack_names:
            kind = attacks[an].kind
            if kind in ATTACKS and tn == threat_names[0]:
                _check_guides_needed(p, path, exp, matrix, an)
            if kind in ATTACKS and t.norm not in ATTACKS.get(kind).norms:
                p.add(
                    f"{path}",
                    f"attack {an!r} ({kind}) works in {', '.join(ATTACKS.get(kind).norms)} but threat "
                    f"{tn!r} is {t.norm}; restrict the experiment's attacks or threats",
                )
            if kind in ATTACKS:
                _check_reach(p, matrix, an, tn, t.epsilons)


def _check_reach(p: Problems, matrix: MatrixConfig, attack: str, threat: str, epsilons: list[float]) -> None:
    """PGD whose steps add up to less than the radius never explores the ball's edge, where adversarial
    examples live; a number from it is the step schedule's, not the defense's. Typical cause: a preset with
    absolute step sizes tuned for CIFAR's 8/255 run at MNIST's 0.3."""
    cfg = (matrix.attacks or {})[attack]
    cls = ATTACKS.get(cfg.kind)
    try:
        params = cls.Params.model_validate(cfg.params)
    except ValidationError:
        return  # reported with the attack's parameters
    if not isinstance(params, PGDParams) or isinstance(params, FGSMParams):
        return
    for eps in (e for e in epsilons if e > 0):
        reach = params.steps * max(params.alphas(eps))
        if reach < eps * (1 - 1e-9):
            p.add(
                f"attacks.{attack}",
                f"{params.steps} steps of at most {max(params.alphas(eps)):g} travel {reach:g}, less than "
                f"threat {threat!r}'s epsilon {eps:g}: the attack cannot reach the edge of the ball; use "
                "rel_step_sizes (multiples of epsilon) or more steps",
            )


def _check_guides_needed(p: Problems, path: str, exp: Experiment, matrix: MatrixConfig, attack: str) -> None:
    cfg = (matrix.attacks or {})[attack]
    cls = ATTACKS.get(cfg.kind)
    try:
        needs = cls(cls.Params.model_validate(cfg.params)).needs_guides()
    except ValidationError:
        return  # reported with the attack's parameters
    if not needs:
        return
    for d in exp.defenses:
        kind = matrix.defenses[d].kind if d in matrix.defenses else ""
        if kind in DEFENSES and not DEFENSES.get(kind).trainable:
            p.add(
                path,
                f"attack {attack!r} crafts on the front-end's guide, but defense {d!r} ({kind}) has no "
                "guides; use surrogate: undefended for it",
            )


def guide_sets(exp: Experiment) -> list[list[str]]:
    if isinstance(exp, EnsembleSizeExperiment):
        return [list(exp.pool)]
    return [list(exp.guides)] if exp.guides is not None else [list(s) for s in exp.guide_sets or []]
