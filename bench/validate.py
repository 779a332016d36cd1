"""Semantic validation of a matrix: everything that can be known wrong before any work starts.

All problems are collected and reported together, each with the file, the key path and what was expected, so
a user fixes a matrix in one pass instead of one error per run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError
from torch import nn

from bench.api import (
    ATTACKS,
    CLASSIFIERS,
    DATASETS,
    DEFENSES,
    RECIPES,
    SOURCES,
    FrontEnd,
    GaussianSmoothing,
    build_classifier,
    check_external,
    freeze,
    load_into,
    load_plugins,
    load_state_dict_file,
    max_radius,
    saved_normalization,
)
from bench.attacks.pgd import FGSMParams, PGDParams
from bench.attacks.smoothed_pgd import SmoothedPGD, SmoothedPGDParams
from bench.config import (
    ClassifierConfig,
    CrossDatasetExperiment,
    CrossModelExperiment,
    EnsembleSizeExperiment,
    Experiment,
    MatrixConfig,
    NativeExperiment,
    PaperSelector,
    Salvage,
    format_validation_error,
    read_matrix,
    resolve_path,
    salvage,
    validation_problems,
)
from bench.data.corruptions import CORRUPTIONS, SEVERITIES, SUPPORTED_SHAPES
from bench.errors import BenchError, ConfigError, UnknownNameError, WeightsError
from bench.evaluation.standard import standard_attacks
from bench.jobs.upstream import load_frontend_weights


class Problems:
    """The problems found so far. Checking what remains of a matrix that failed its schema (``left_out``),
    a reference to an entry left out is not reported again as unknown, and an experiment's path names its
    place in the file, not in what remains."""

    def __init__(self, source: str, left_out: Salvage | None = None) -> None:
        self.source = source
        self.lines: list[str] = []
        self.left_out = left_out

    def add(self, path: str, message: str) -> None:
        if self.left_out is not None:
            kept = self.left_out.experiments
            path = _EXPERIMENT.sub(lambda m: f"experiments[{kept[int(m.group(1))]}]", path)
        line = f"{self.source}: {path}: {message}"
        if line not in self.lines:  # e.g. a radius too large for every experiment that uses its threat
            self.lines.append(line)

    def name(self, path: str, kind: str, name: str, valid: Iterable[str]) -> bool:
        valid = list(valid)
        if name in valid:
            return True
        if not self.omitted(kind, name):
            self.add(path, str(UnknownNameError(kind, name, valid)))
        return False

    def omitted(self, kind: str, label: str) -> bool:
        """Whether the entry was left out of the matrix for a schema error reported already."""
        return self.left_out is not None and (kind, label) in self.left_out.labels

    def incomplete(self, *parts: str) -> bool:
        """Whether any of these parts was left out for a schema error: settings or blocks by dotted path
        (``evaluation.protocol``, ``paper``), ``experiments`` for any experiment, a section (``defenses``)
        for any of its entries. A check of the whole would then report what is missing, not what is wrong."""
        if self.left_out is None:
            return False
        kept = self.left_out.experiments
        dropped = set(self.left_out.settings) | {f"{kind}s" for kind, _ in self.left_out.labels}
        if kept != tuple(range(len(kept))):
            dropped.add("experiments")
        return any(part in dropped for part in parts)

    def params(self, path: str, model: type[BaseModel], values: dict[str, Any]) -> BaseModel | None:
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            prefix = tuple(path.split("."))
            self.lines.append(format_validation_error(exc, self.source, prefix, model))
            return None

    def raise_if_any(self) -> None:
        if self.lines:
            raise self.error()

    def error(self) -> ConfigError:
        n = len(self.lines)
        head = f"the matrix has {n} problem{'s' if n > 1 else ''}:\n" if n > 1 else ""
        return ConfigError(head + "\n".join(self.lines))


_EXPERIMENT = re.compile(r"^experiments\[(\d+)\]")


def load_valid_matrix(path: Path, data_root: Path) -> MatrixConfig:
    """Reads, parses and validates a matrix file, raising one :class:`ConfigError` with every problem: a
    schema error (``n_eval: 0``) does not hide the rule errors of the rest of the file (an unknown
    architecture, a negative radius), which are checked on what remains once the wrong parts are left out."""
    source = str(path)
    raw = read_matrix(path)
    try:
        matrix = MatrixConfig.model_validate(raw)
    except ValidationError as exc:
        _raise_all(raw, exc, path, data_root)
    validate_matrix(matrix, source, path.parent, data_root)
    return matrix


def _raise_all(raw: dict[str, Any], exc: ValidationError, path: Path, data_root: Path) -> NoReturn:
    rest = salvage(raw, exc)
    p = Problems(str(path), rest)
    p.lines.extend(validation_problems(exc, str(path)))
    if rest is not None:
        _collect(p, rest.matrix, path.parent, data_root)
    raise p.error()


def validate_matrix(matrix: MatrixConfig, source: str, base_dir: Path, data_root: Path) -> None:
    p = Problems(source)
    _collect(p, matrix, base_dir, data_root)
    p.raise_if_any()


def _collect(p: Problems, matrix: MatrixConfig, base_dir: Path, data_root: Path) -> None:
    load_plugins()
    shapes: dict[str, tuple[int, int, int]] = {}
    for label, c in matrix.classifiers.items():
        shape = _check_classifier(p, f"classifiers.{label}", c, base_dir, data_root)
        if shape is not None:
            shapes[label] = shape
    for label, d in matrix.defenses.items():
        path = f"defenses.{label}"
        if p.name(f"{path}.kind", "defense", d.kind, DEFENSES.names()):
            p.params(f"{path}.params", DEFENSES.get(d.kind).Params, d.params)
    _check_defense_origins(p, matrix, base_dir, data_root)
    # Which attacks the cells run depends on the protocol and the attacks block; one left out changes it.
    attacks_known = not p.incomplete("attacks", "evaluation", "evaluation.protocol")
    if attacks_known:
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
    if matrix.certify is not None:
        _check_certify(p, matrix)
    for i, exp in enumerate(matrix.experiments):
        _check_experiment(p, f"experiments[{i}]", exp, matrix, shapes)
    if matrix.paper is not None and attacks_known and not p.incomplete("experiments"):
        _check_paper(p, matrix)


def _check_defense_origins(p: Problems, matrix: MatrixConfig, base_dir: Path, data_root: Path) -> None:
    """Where each defense entry's front-end comes from, before any work. A ``weights`` file exists and
    strictly loads into the defense's architecture at every input shape the matrix builds it for. An
    ``init_from`` names a defense of the matrix, through no chain of inits that comes back to it, for an entry
    that trains; the init's architecture is this one's (its untrained front-end strictly loads into this
    one's), and the defense accepts it (``Defense.check_init``, asked of every trained entry, with or without
    an init, so a defense that needs one says so)."""
    shapes = _defense_shapes(matrix)
    built: dict[tuple[str, tuple[int, int, int]], FrontEnd | None] = {}

    def frontend(name: str, shape: tuple[int, int, int]) -> FrontEnd | None:
        """The untrained front-end of entry ``name`` at ``shape``; None where its problem is reported."""
        if (name, shape) not in built:
            built[name, shape] = None
            d = matrix.defenses[name]
            params = _defense_params(matrix, name)
            if params is not None:
                try:
                    built[name, shape] = DEFENSES.get(d.kind)().build(params, shape)
                except BenchError as exc:
                    p.add(f"defenses.{name}.params", f"defense {name!r} ({d.kind}) cannot be built: {exc}")
        return built[name, shape]

    for label, d in matrix.defenses.items():
        path = f"defenses.{label}"
        cls = DEFENSES.get(d.kind) if d.kind in DEFENSES else None
        if d.weights is not None:
            where = resolve_path(d.weights, base_dir, data_root)
            if cls is not None and cls.trains_classifier:
                problem = (f"defense {label!r} ({d.kind}) trains its classifiers jointly with its front-end, "
                           "and a weights file holds no classifier; train it instead")
                p.add(f"{path}.weights", problem)
            elif not where.is_file():
                problem = (f"weights file {str(where)!r} does not exist (relative paths are from the matrix "
                           "file's folder; {data_dir} expands to the data root)")
                p.add(f"{path}.weights", problem)
            else:
                try:
                    state = load_state_dict_file(where)
                    for shape in sorted(shapes.get(label, ())):
                        fe = frontend(label, shape)
                        if fe is not None:
                            load_frontend_weights(fe, state, str(where))
                except WeightsError as exc:
                    p.add(f"{path}.weights", str(exc))
            continue
        init_kind, init_params = None, None
        if d.init_from is not None:
            _check_init_from(p, matrix, label, shapes.get(label, set()), frontend)
            init_params = _defense_params(matrix, d.init_from) if d.init_from in matrix.defenses else None
            if init_params is None:
                continue  # reported with init_from, or with the init's kind or parameters
            init_kind = matrix.defenses[d.init_from].kind
        params = _defense_params(matrix, label)
        if cls is None or params is None:
            continue  # reported with the defense's kind or parameters
        try:
            cls().check_init(params, init_kind, init_params)
        except ConfigError as exc:
            at = f"{path}.init_from" if d.init_from is not None else path
            p.add(at, f"defense {label!r} ({d.kind}): {exc}")


def _check_init_from(
    p: Problems,
    matrix: MatrixConfig,
    label: str,
    shapes: set[tuple[int, int, int]],
    frontend: Callable[[str, tuple[int, int, int]], FrontEnd | None],
) -> None:
    d = matrix.defenses[label]
    path = f"defenses.{label}"
    init = d.init_from
    assert init is not None
    for j, g in enumerate(d.init_guides or []):
        p.name(f"{path}.init_guides[{j}]", "classifier", g, matrix.classifiers)
    if not p.name(f"{path}.init_from", "defense", init, matrix.defenses):
        return
    circle = _init_circle(matrix, label)
    if circle is not None:
        problem = (f"init_from goes round in a circle ({' -> '.join(circle)}): some front-end of it must be "
                   "trained from scratch or loaded from weights")
        p.add(f"{path}.init_from", problem)
        return
    cls = DEFENSES.get(d.kind) if d.kind in DEFENSES else None
    if cls is not None and not (cls.trainable or cls.needs_data):
        problem = (f"defense {label!r} ({d.kind}) trains nothing, so nothing starts from defense {init!r}'s "
                   "front-end; load a trained front-end with weights: instead")
        p.add(f"{path}.init_from", problem)
        return
    init_shape = _dataset_shape(matrix, d.init_guides[0]) if d.init_guides else None
    for shape in sorted(shapes):
        mine, theirs = frontend(label, shape), frontend(init, init_shape or shape)
        if mine is None or theirs is None:
            continue
        try:
            load_into(mine, theirs.state_dict(), f"defense {init!r}'s front-end")
        except WeightsError as exc:
            kind = matrix.defenses[init].kind
            p.add(f"{path}.init_from", f"defense {label!r} ({d.kind}) cannot start from defense {init!r} "
                                       f"({kind}), whose architecture differs: {exc}")


def _init_circle(matrix: MatrixConfig, label: str) -> list[str] | None:
    """The chain of ``init_from`` that leads from defense ``label`` back to it, or None when none does (a
    chain may lead into a circle that does not pass through ``label``: its own entries report that one)."""
    chain = [label]
    current = matrix.defenses[label].init_from
    while current is not None and current in matrix.defenses:
        if current == label:
            return [*chain, label]
        if current in chain:
            return None
        chain.append(current)
        current = matrix.defenses[current].init_from
    return None


def _defense_params(matrix: MatrixConfig, name: str) -> BaseModel | None:
    """Defense entry ``name``'s validated parameters; None where they or its kind are reported as wrong."""
    d = matrix.defenses[name]
    if d.kind not in DEFENSES:
        return None
    try:
        return DEFENSES.get(d.kind).Params.model_validate(d.params)
    except ValidationError:
        return None


def _dataset_shape(matrix: MatrixConfig, classifier: str) -> tuple[int, int, int] | None:
    c = matrix.classifiers.get(classifier)
    return DATASETS.get(c.dataset).info.input_shape if c is not None and c.dataset in DATASETS else None


def _defense_shapes(matrix: MatrixConfig) -> dict[str, set[tuple[int, int, int]]]:
    """By defense entry, the input shapes the matrix builds its front-end for: its experiments' guides'. An
    entry only other entries start from is built at theirs."""
    shapes: dict[str, set[tuple[int, int, int]]] = {}
    for exp in matrix.experiments:
        found = {shape for s in guide_sets(exp) if (shape := _dataset_shape(matrix, s[0])) is not None}
        for name in exp.defenses:
            shapes.setdefault(name, set()).update(found)
    grew = True
    while grew:  # along chains of inits; sets only grow, so this ends, circles included
        grew = False
        for name, d in matrix.defenses.items():
            if d.init_from is None or d.init_from not in matrix.defenses:
                continue
            shape = _dataset_shape(matrix, d.init_guides[0]) if d.init_guides else None
            extra = {shape} if shape is not None else shapes.get(name, set())
            theirs = shapes.setdefault(d.init_from, set())
            grew = grew or not extra <= theirs
            theirs.update(extra)
    return shapes


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
        _check_standard_budget(p, ev.standard_budget or {})
        return
    if ev.standard_budget is not None:
        p.add("evaluation.standard_budget", "changes the standard protocol's budgets, but the matrix runs "
                                            "its own attacks (evaluation.protocol: custom); set their "
                                            "parameters in the attacks: block instead")
    if not attacks:
        p.add("attacks", "evaluation.protocol: custom runs the matrix's own attacks, but it names none; add "
                         "an attacks: block, or remove protocol: custom to run the standard protocol")
    for j, name in enumerate(ev.cascade or []):
        if p.name(f"evaluation.cascade[{j}]", "attack", name, attacks) and (ev.cascade or []).index(name) < j:
            p.add(f"evaluation.cascade[{j}]", f"attack {name!r} is already in the cascade; each runs once")


def _check_standard_budget(p: Problems, budget: dict[str, dict[str, Any]]) -> None:
    protocol = {
        a.label.removeprefix("std:"): a
        for r in (False, True)
        for smoothed in (False, True)
        for a in standard_attacks(r, smoothed)
    }
    for label, change in budget.items():
        path = f"evaluation.standard_budget.{label}"
        if p.name(path, "standard-protocol attack", label, protocol):
            attack = protocol[label]
            p.params(path, ATTACKS.get(attack.kind).Params, {**attack.params, **change})


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


def _check_certify(p: Problems, matrix: MatrixConfig) -> None:
    """A certify block certifies the pipelines whose front-end declares smoothing, so it needs at least one;
    its ``sigmas`` go into each smoothing defense's ``sigma`` parameter, which the defense must have; and
    normalized-space noise needs the normalization of every classifier it is certified on. Front-ends are
    built untrained, as the planner builds them to read their declarations."""
    built: dict[tuple[str, tuple[int, int, int]], GaussianSmoothing | None] = {}
    declared = False
    sigmas_checked: set[str] = set()
    for i, exp in enumerate(matrix.experiments):
        shapes = {
            DATASETS.get(matrix.classifiers[s[0]].dataset).info.input_shape
            for s in guide_sets(exp)
            if s[0] in matrix.classifiers and matrix.classifiers[s[0]].dataset in DATASETS
        }
        for j, name in enumerate(exp.defenses):
            d = matrix.defenses.get(name)
            if d is None or d.kind not in DEFENSES:
                continue  # reported with the experiment or the defense
            cls = DEFENSES.get(d.kind)
            try:
                params = cls.Params.model_validate(d.params)
            except ValidationError:
                continue  # reported with the defense's parameters
            for shape in sorted(shapes):
                if (name, shape) not in built:
                    try:
                        built[name, shape] = getattr(cls().build(params, shape), "smoothing", None)
                    except BenchError as exc:
                        built[name, shape] = None
                        problem = f"defense {name!r} ({d.kind}) cannot be built: {exc}"
                        p.add(f"defenses.{name}.params", problem)
                        continue
                smoothing = built[name, shape]
                if smoothing is not None and name not in sigmas_checked:
                    sigmas_checked.add(name)
                    _check_sigmas(p, matrix, name)
                declared = declared or smoothing is not None
                if smoothing is None or smoothing.space != "normalized" or smoothing.std is not None:
                    continue  # only noise scaled by the classifier's own normalization needs it known
                for t in _evaluated(exp):
                    target = matrix.classifiers.get(t)
                    if target is not None and target.source is not None:
                        p.add(
                            f"experiments[{i}].defenses[{j}]",
                            f"defense {name!r} adds its noise after the classifier's normalization "
                            f"(space: normalized), but target {t!r} is a model-zoo classifier "
                            f"({target.source}) that normalizes inside itself, so its normalization and the "
                            "noise's size in pixels are unknown; declare space: pixel for it",
                        )
    if not declared and not p.incomplete("defenses", "experiments", "certify.sigmas"):
        p.add(
            "certify",
            "no defense of the matrix's experiments declares smoothing (FrontEnd.smoothing), so there is "
            "nothing to certify; add a smoothing defense (kind: smoothing) or remove the certify block",
        )


def _check_sigmas(p: Problems, matrix: MatrixConfig, name: str) -> None:
    """``certify.sigmas`` replaces the ``sigma`` parameter of each defense that declares smoothing."""
    sigmas = matrix.certify.sigmas if matrix.certify is not None else None
    if sigmas is None:
        return
    d = matrix.defenses[name]
    model = DEFENSES.get(d.kind).Params
    if "sigma" not in model.model_fields:
        p.add(
            f"defenses.{name}",
            f"certify.sigmas plans every smoothing defense once per sigma by setting its parameter sigma, "
            f"but defense {name!r} ({d.kind}) declares smoothing without a sigma parameter; remove "
            "certify.sigmas to certify it at the sigma it declares",
        )
        return
    for s in sigmas:
        p.params(f"defenses.{name}.params", model, {**d.params, "sigma": s})


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
        _check_weights_file(p, path, "weights", c.weights, c, base_dir, data_root)
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
        if c.init_weights is not None:
            _check_weights_file(p, path, "init_weights", c.init_weights, c, base_dir, data_root)
    return info.input_shape


def _check_weights_file(
    p: Problems, path: str, key: str, file: str, c: ClassifierConfig, base_dir: Path, data_root: Path
) -> None:
    """A classifier's weights file (``key``: ``weights`` or ``init_weights``) exists, reads as weights, and
    records its normalization unless the matrix states one."""
    label = path.removeprefix("classifiers.")
    where = resolve_path(file, base_dir, data_root)
    if not where.is_file():
        p.add(
            f"{path}.{key}",
            f"weights file {str(where)!r} does not exist (relative paths are from the "
            "matrix file's folder; {data_dir} expands to the data root)",
        )
    elif c.normalization is None:
        try:
            if saved_normalization(load_state_dict_file(where)) is None:
                p.add(f"{path}.normalization", unstated_normalization(label, c.dataset))
        except WeightsError as exc:
            p.add(f"{path}.{key}", str(exc))


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
    if any(ds[c] not in DATASETS for c in [*(c for s in sets for c in s), *targets]):
        return  # reported with the classifier; comparing it with the others' datasets would be a follow-on
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
        if cls.trains_classifier:
            for guide in dict.fromkeys(g for s in sets for g in s):
                problem = pretrained_joint_guide(name, d.kind, guide, matrix.classifiers[guide])
                if problem is not None:
                    p.add(f"{path}.defenses[{j}]", problem)
        try:
            params = cls.Params.model_validate(d.params)
        except ValidationError:
            continue  # reported with the defense's parameters
        for s in sets:
            evaluated = s if isinstance(exp, NativeExperiment) else list(getattr(exp, "targets", []))
            aliases = {t: _as_guide(matrix, t, s) for t in evaluated}
            try:
                cls().check_targets(params, s, list(aliases.values()))
            except ConfigError as exc:
                same = "".join(f" ({t} is the same classifier as {g})" for t, g in aliases.items() if t != g)
                which = f"defense {name!r} ({d.kind}), guides {'+'.join(s)}"
                p.add(f"{path}.defenses[{j}]", f"{which}: {exc}{same}")
            first = matrix.classifiers[s[0]].dataset
            if first not in DATASETS:
                continue
            guides = [g for g in map(skeleton, s) if g is not None]
            try:
                cls().check(params, DATASETS.get(first).info.input_shape, guides)
            except ConfigError as exc:
                p.add(f"{path}.defenses[{j}]", f"defense {name!r} ({d.kind}), guides {'+'.join(s)}: {exc}")


def _as_guide(matrix: MatrixConfig, target: str, guides: list[str]) -> str:
    """``target``, or the guide whose entry is identical to its own: one classifier under two labels."""
    same = [g for g in guides if matrix.classifiers[g] == matrix.classifiers[target]]
    return same[0] if same else target


def pretrained_joint_guide(defense: str, kind: str, guide: str, c: ClassifierConfig) -> str | None:
    """Why ``guide`` cannot be a guide of a defense that trains its guides from scratch with its front-end
    (``trains_classifier``), or None when it can: a pre-trained guide would be silently thrown away."""
    given = next((f"{k}: {v}" for k, v in (("weights", c.weights), ("source", c.source),
                                            ("init_weights", c.init_weights)) if v is not None), None)
    if given is None:
        return None
    return (
        f"defense {defense!r} ({kind}) trains its guide classifiers from scratch, jointly with its "
        f"front-end, but guide {guide!r} is pre-trained ({given}); give that guide an arch without weights "
        "or source so a new one is trained, or use a defense that trains through frozen pre-trained guides "
        "(rtfe, robustifier)"
    )


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
    if isinstance(params, SmoothedPGDParams):
        if issubclass(cls, SmoothedPGD) and cls.weak_reproduction is not None:
            return  # a paper's own weak attack, let through under its name only; its rows are flagged weak
    elif not isinstance(params, PGDParams) or isinstance(params, FGSMParams):
        return
    for eps in (e for e in epsilons if e > 0):
        step = params.alpha(eps) if isinstance(params, SmoothedPGDParams) else max(params.alphas(eps))
        reach = params.steps * step
        if reach < eps * (1 - 1e-9):
            p.add(
                f"attacks.{attack}",
                f"{params.steps} steps of at most {step:g} travel {reach:g}, less than "
                f"threat {threat!r}'s epsilon {eps:g}: the attack cannot reach the edge of the ball; use "
                "relative step sizes (multiples of epsilon) or more steps",
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


def _check_paper(p: Problems, matrix: MatrixConfig) -> None:
    """Every name in the paper block is one of the matrix's, and every number names a cell the matrix
    evaluates, so a misspelt name or a cell the matrix never runs is caught before the run, not printed as a
    blank beside the paper's number after it."""
    assert matrix.paper is not None
    if matrix.standard_protocol is None:
        attacks = list(matrix.attacks or {})
    else:
        labels = (a.label for r in (False, True) for s in (False, True) for a in standard_attacks(r, s))
        attacks = list(dict.fromkeys(labels))
    for i, table in enumerate(matrix.paper.tables):
        path = f"paper.tables[{i}]"
        parts: list[tuple[str, PaperSelector]] = [(path, table)]
        parts += [(f"{path}.rows[{j}]", row) for j, row in enumerate(table.rows)]
        parts += [(f"{path}.columns[{k}]", column) for k, column in enumerate(table.columns)]
        known = all([_check_paper_names(p, where, part, matrix, attacks) for where, part in parts])
        if not known:
            continue  # an entry naming an unknown defense or classifier cannot be placed
        for j, row in enumerate(table.rows):
            for k, column in enumerate(table.columns):
                if table.numbers[j][k] is None:
                    continue
                problem = _paper_entry_problem(matrix, table.selector(j, k))
                if problem is not None:
                    where = f"row {row.label!r}, column {column.label!r}"
                    p.add(f"{path}.numbers[{j}][{k}]", f"{where}: {problem}")


def _check_paper_names(
    p: Problems, path: str, part: PaperSelector, matrix: MatrixConfig, attacks: list[str]
) -> bool:
    """Checks the names one table, row or column gives; False when one of them is unknown."""
    ok = True
    if part.defense is not None:
        ok &= p.name(f"{path}.defense", "defense", part.defense, matrix.defenses)
    for j, guide in enumerate(part.guides or []):
        ok &= p.name(f"{path}.guides[{j}]", "classifier", guide, matrix.classifiers)
    if part.target is not None:
        ok &= p.name(f"{path}.target", "classifier", part.target, matrix.classifiers)
    if part.threat is not None:
        ok &= p.name(f"{path}.threat", "threat", part.threat, matrix.threats)
    if part.attack is not None:
        ok &= p.name(f"{path}.attack", "attack", part.attack, attacks)
    sizes = sorted({m for e in matrix.experiments if isinstance(e, EnsembleSizeExperiment) for m in e.sizes})
    if part.m is not None and part.m not in sizes:
        p.add(f"{path}.m", f"no ensemble-size experiment of the matrix has size {part.m} (sizes: {sizes})")
        ok = False
    certify = matrix.certify
    if (part.radius is not None or part.sigma is not None) and certify is None:
        p.add(path, "a radius or sigma names a certified number, but the matrix has no certify block")
        return False
    if certify is not None and part.radius is not None and not _among(part.radius, certify.radii):
        p.add(f"{path}.radius", f"radius {part.radius:g} is not one of certify.radii {certify.radii}")
        ok = False
    sigmas = certify.sigmas if certify is not None else None
    if part.sigma is not None and sigmas is not None and not _among(part.sigma, sigmas):
        p.add(f"{path}.sigma", f"sigma {part.sigma:g} is not one of certify.sigmas {sigmas}")
        ok = False
    return ok


def _among(value: float, values: Iterable[float]) -> bool:
    return any(math.isclose(value, v, rel_tol=1e-9, abs_tol=1e-12) for v in values)


def _paper_entry_problem(matrix: MatrixConfig, entry: PaperSelector) -> str | None:
    """Why one number of a paper's table names no single cell of the matrix, or None when it names one.

    A threat stands for its norm and radius: two threats of the matrix may share a radius, and with it the
    cells there. Without ``m`` an entry names the other experiments' cells, with it an ensemble size's draws.
    """
    if entry.defense is None or entry.target is None:
        return "names no defense and target (give them on the row, the column or the table)"
    metric = entry.measured
    if metric == "certified" and entry.radius is None:
        return "a certified number needs a radius"
    if metric != "certified" and entry.radius is not None:
        return f"radius is for certified numbers, not {metric} ones"
    if entry.attack is not None and metric != "robust":
        return f"attack is for robust numbers, not {metric} ones"
    if entry.attack is not None and entry.sigma is not None:
        # A smoothed cell records its sigma, one attack's rows do not: the entry would match every sigma.
        return "sigma picks a smoothed pipeline's worst-case cell, not one attack's number; remove attack"
    at: tuple[str, float] | None = None
    if metric == "robust":
        threat = entry.threat
        if threat is None:
            if len(matrix.threats) > 1:
                return f"give threat: the matrix has several ({', '.join(matrix.threats)})"
            threat = next(iter(matrix.threats))
        epsilons = matrix.threats[threat].epsilons
        listed = ", ".join(f"{e:g}" for e in epsilons)
        if entry.eps is None and len(epsilons) > 1:
            return f"give eps: threat {threat!r} has several ({listed})"
        if entry.eps is not None and not _among(entry.eps, epsilons):
            return f"eps {entry.eps:g} is not a radius of threat {threat!r} ({listed})"
        at = (matrix.threats[threat].norm, entry.eps if entry.eps is not None else epsilons[0])
    trainable = DEFENSES.get(matrix.defenses[entry.defense].kind).trainable
    if entry.guides is not None and not trainable:
        return f"defense {entry.defense!r} trains no front-end, so it has no guide set; remove guides"
    sets = _paper_guide_sets(matrix, entry, at)
    if not sets:
        with_guides = f" with guides {'+'.join(entry.guides)}" if entry.guides else ""
        size = f" at ensemble size {entry.m}" if entry.m is not None else ""
        under = f" at {at[0]} eps {at[1]:g}" if at is not None else ""
        what = f"defense {entry.defense!r}{with_guides}{size}"
        return f"no experiment evaluates {what} on target {entry.target!r}{under}"
    if trainable and entry.guides is None and entry.m is None and len(sets) > 1:
        listed = ", ".join("+".join(s) for s in sorted(sets))
        where = f"defense {entry.defense!r} meets target {entry.target!r}"
        return f"{where} with several guide sets ({listed}); give guides"
    return None


def _paper_guide_sets(
    matrix: MatrixConfig, entry: PaperSelector, at: tuple[str, float] | None
) -> set[tuple[str, ...]]:
    """The guide sets with which the matrix evaluates the entry's defense on its target (at norm and radius
    ``at``): the other experiments' without ``m``, an ensemble-size experiment's pool (standing for all its
    draws) with it."""
    found: set[tuple[str, ...]] = set()
    for exp in matrix.experiments:
        threats = [matrix.threats[t] for t in exp.threats or matrix.threats if t in matrix.threats]
        reaches = at is None or any(t.norm == at[0] and _among(at[1], t.epsilons) for t in threats)
        if entry.defense not in exp.defenses or not reaches:
            continue
        if isinstance(exp, EnsembleSizeExperiment):
            wanted = entry.guides
            fits = wanted is None or (set(wanted) <= set(exp.pool) and len(wanted) in exp.sizes)
            if entry.m is not None and entry.m in exp.sizes and entry.target in exp.targets and fits:
                found.add(tuple(sorted(wanted or exp.pool)))
        elif entry.m is None:
            for s in guide_sets(exp):
                evaluated = s if isinstance(exp, NativeExperiment) else list(getattr(exp, "targets", []))
                if entry.target in evaluated and (entry.guides is None or sorted(entry.guides) == sorted(s)):
                    found.add(tuple(sorted(s)))
    return found
