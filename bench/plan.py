"""Matrix -> job graph: train classifier -> train front-end -> attack -> cell.

Planning resolves every default (recipe, defense and attack parameters), loads each dataset once to learn its
identity, and keys every job by content, so the same front-end serves a native and a cross-model experiment,
and the graph of a matrix that was already run is recognised job by job.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.api import (
    ATTACKS,
    CLASSIFIERS,
    DATASETS,
    DEFENSES,
    RECIPES,
    Defense,
    DefenseParams,
    GaussianSmoothing,
    ImageData,
    Norm,
    load_classifier_weights,
    load_state_dict_file,
    saved_normalization,
    sha256_file,
)
from bench.api.weights import StateDict
from bench.config import (
    FULL_SCALE_N,
    AttackConfig,
    ClassifierConfig,
    DefenseConfig,
    EnsembleSizeExperiment,
    Experiment,
    MatrixConfig,
    NamedNormalization,
    NativeExperiment,
    Normalization,
    resolve_path,
)
from bench.data.corruptions import CORRUPTIONS
from bench.data.corruptions import IMPLEMENTATION_VERSION as CORRUPTION_VERSION
from bench.data.splits import eval_shortfall, eval_subset, train_shortfall, train_split
from bench.errors import ConfigError
from bench.evaluation.judge import DEFAULT_PREDICT
from bench.evaluation.run_attack import PROTOCOL_VERSION
from bench.evaluation.standard import budgeted, standard_attacks
from bench.jobs.certify import CERTIFY_VERSION, check_noise_space, select_images, selection_notes
from bench.jobs.configs import (
    AttackJobConfig,
    CellJobConfig,
    CertifyImages,
    CertifyJobConfig,
    ClassifierFromSource,
    ClassifierFromWeights,
    ClassifierJobConfig,
    CorruptionJobConfig,
    EvaluatingJobConfig,
    FrontEndJobConfig,
    JointClassifier,
    TrainedClassifier,
)
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import load_frontend_weights, new_classifier, new_frontend
from bench.uses import ClassifierUse, EvaluationUse, FrontEndUse
from bench.validate import guide_sets, pretrained_joint_guide, unstated_normalization


@dataclass(frozen=True)
class Planned:
    graph: JobGraph
    #: Keys of the jobs whose rows the report shows for this matrix (attack and cell jobs).
    evaluations: tuple[str, ...]


class Planner:
    def __init__(self, matrix: MatrixConfig, base_dir: Path, env: Env) -> None:
        self.m = matrix
        self.base_dir = base_dir
        self.env = env
        self.graph = JobGraph()
        self._classifier_keys: dict[str, str] = {}
        self._evaluations: list[str] = []
        #: What a front-end declares (its smoothing, whether it draws at random), by what decides it: the
        #: defense kind, its parameters and the input shape. Building a large denoiser costs seconds, and one
        #: configuration is planned for many guide sets and targets.
        self._declared: dict[str, tuple[GaussianSmoothing | None, bool]] = {}
        #: The defenses whose front-end job is being planned, innermost last: ``init_from`` chains end.
        self._initializing: list[str] = []
        #: The standard protocol's attacks whose budget the matrix changed, by label, with the note saying so.
        self._budget_changes: dict[str, str] = {}

    # -- data -------------------------------------------------------------------------------------------
    def _split_note(self, data: ImageData, split: str) -> list[str]:
        info = data.info
        full = info.train_size if split == "train" else info.test_size
        if len(data) < full:
            return [f"{info.name} files hold {len(data)} of {full} {split} images"]
        return []

    def _train_data(self, dataset: str, n_train: int | None, n_val: int) -> tuple[ImageData, list[str]]:
        full = self.env.dataset(dataset, "train")
        sub, _ = train_split(full, n_train, n_val)
        notes = self._split_note(full, "train")
        if len(sub) < len(full) - n_val:
            notes.append(f"trained on {len(sub)} of {len(full) - n_val} {dataset} training images")
        short = train_shortfall(full, n_train, n_val)
        if short is not None:
            notes.append(short.note())
        return sub, notes

    def _eval_data(self, dataset: str) -> tuple[ImageData, list[str]]:
        full = self.env.dataset(dataset, "test")
        ev = self.m.evaluation
        sub = eval_subset(full, ev.n_eval, ev.seed)
        notes = self._split_note(full, "test")
        if len(sub) < len(full):
            notes.append(f"evaluated on {len(sub)} of {len(full)} {dataset} test images")
        short = eval_shortfall(full, ev.n_eval)
        if short is not None:
            notes.append(short.note())
        return sub, notes

    # -- classifiers --------------------------------------------------------------------------------------
    def classifier(self, label: str) -> str:
        if label in self._classifier_keys:
            return self._classifier_keys[label]
        c = self.m.classifiers[label]
        info = DATASETS.get(c.dataset).info
        shared: dict[str, object] = {
            "arch": c.arch or c.source,
            "dataset": c.dataset,
            "num_classes": info.num_classes,
            # A zoo model normalizes its own input (see classifiers.adapters).
            "normalization": _normalization(c, info.mean, info.std)
            if c.source is None
            else Normalization(mean=[0.0] * len(info.mean), std=[1.0] * len(info.std)),
            "seed": c.seed,
        }
        config: ClassifierJobConfig
        notes: list[str] = []
        locations: dict[str, str] = {}
        test = self.env.dataset(c.dataset, "test")
        if c.weights is not None:
            path, state = self._weights_file(label, c, c.weights, shared)
            config = ClassifierFromWeights.model_validate({**shared, "weights_sha256": sha256_file(path)})
            # Load once now: a file with wrong shapes or a non-weights pickle stops the run before any work.
            load_classifier_weights(new_classifier(config), state, str(path))
            locations["weights"] = str(path)
            data = test.identity
        elif c.source is not None:
            config = ClassifierFromSource.model_validate({**shared, "source": c.source})
            data = test.identity
        else:
            assert c.arch is not None
            spec = CLASSIFIERS.get(c.arch)
            recipe_name = c.recipe or spec.recipe
            assert recipe_name is not None, "validation refuses to train an architecture without a recipe"
            recipe = RECIPES.get(recipe_name)
            params = recipe.Params.model_validate(c.train)
            train, notes = self._train_data(c.dataset, params.n_train, params.n_val)
            if params.epochs < recipe.full_scale_epochs:
                notes.append(
                    f"classifier {label} trained {params.epochs} of {recipe.full_scale_epochs} epochs"
                )
            notes = [f"classifier {label}: {n}" if not n.startswith("classifier") else n for n in notes]
            trained = {**shared, "recipe": recipe_name, "train": params}
            if c.init_weights is None:
                config = TrainedClassifier.model_validate(trained)
            else:
                path, state = self._weights_file(label, c, c.init_weights, trained)
                config = TrainedClassifier.model_validate({**trained, "init_sha256": sha256_file(path)})
                load_classifier_weights(new_classifier(config), state, str(path))
                locations["init_weights"] = str(path)
            data = f"{train.identity}+{test.identity}"
        job = self.graph.add(
            JobSpec(
                f"classifier {label} ({config.arch}, {c.dataset}, seed {c.seed})",
                config,
                (),
                data,
                tuple(notes),
                locations,
            ),
            ClassifierUse(classifier=label),
        )
        self._classifier_keys[label] = job.key
        return job.key

    def _weights_file(
        self, label: str, c: ClassifierConfig, file: str, shared: dict[str, object]
    ) -> tuple[Path, StateDict]:
        """The resolved path of a classifier's weights file and its contents, read once; unless the matrix
        states the normalization, the one the file records goes into ``shared``."""
        path = resolve_path(file, self.base_dir, self.env.data_root)
        state = load_state_dict_file(path)
        if c.normalization is None:
            recorded = saved_normalization(state)
            if recorded is None:  # validation refuses this; planning never guesses either
                raise ConfigError(unstated_normalization(label, c.dataset))
            shared["normalization"] = recorded
        return path, state

    def joint_classifiers(self, defense: str, guides: list[str]) -> dict[str, JointClassifier]:
        """By guide, the new classifiers a defense that ``trains_classifier`` builds and trains with its
        front-end: each guide's architecture, dataset, normalization and seed (its recipe is for an
        independently trained copy, if the matrix uses one). Indexed in the order of their dumps, so the
        front-end's key does not depend on the order the matrix lists the guides in."""
        kind = self.m.defenses[defense].kind
        fresh: dict[str, JointClassifier] = {}
        for g in guides:
            c = self.m.classifiers[g]
            problem = pretrained_joint_guide(defense, kind, g, c)
            if problem is not None:  # validation refuses this first
                raise ConfigError(problem)
            assert c.arch is not None  # a classifier with neither weights nor source names its architecture
            info = DATASETS.get(c.dataset).info
            fresh[g] = JointClassifier(
                arch=c.arch,
                dataset=c.dataset,
                num_classes=info.num_classes,
                normalization=_normalization(c, info.mean, info.std),
                seed=c.seed,
                index=0,
            )
        order = sorted(guides, key=lambda g: fresh[g].model_dump_json())
        return {g: fresh[g].model_copy(update={"index": order.index(g)}) for g in guides}

    def joint_classifier(self, fe: JobSpec, defense: str, guides: list[str], guide: str) -> str:
        """The job of the classifier that front-end job ``fe`` trained for ``guide``: it takes its weights out
        of the front-end job's artifacts, and is what the front-end is evaluated on natively."""
        config = self.joint_classifiers(defense, guides)[guide]
        test = self.env.dataset(config.dataset, "test")
        job = self.graph.add(
            JobSpec(
                f"classifier {guide} ({config.arch}, {config.dataset}, seed {config.seed}) trained with "
                f"front-end {defense}",
                config,
                (fe.key,),
                test.identity,
                fe.scale_notes,
            ),
            ClassifierUse(classifier=guide, trained_with=defense),
        )
        return job.key

    def _joint_guides(self) -> set[str]:
        """Classifiers the matrix names as guides of a defense that trains its own: they get a job of their
        own only where another place of the matrix uses them as independently trained classifiers."""
        return {
            g
            for exp in self.m.experiments
            for name in exp.defenses
            if DEFENSES.get(self.m.defenses[name].kind).trains_classifier
            for s in guide_sets(exp)
            for g in s
        }

    def retrains_classifier(self, defense: str, tkey: str) -> bool | None:
        """True when the pipeline's robustness rests on training a classifier for it: the defense trains its
        own, or the target's recipe trains for robustness (see :attr:`EvaluationUse.retrains_classifier`)."""
        if DEFENSES.get(self.m.defenses[defense].kind).trains_classifier:
            return True
        target = self.graph[tkey].settings
        if isinstance(target, TrainedClassifier) and RECIPES.get(target.recipe).robust_training(target.train):
            return True
        return None

    # -- front-ends ---------------------------------------------------------------------------------------
    def frontend(self, label: str, guides: list[str], sigma: float | None = None) -> JobSpec:
        """The front-end job of defense ``label`` for ``guides``; ``sigma`` overrides its parameter ``sigma``
        (a smoothing defense planned once per ``certify.sigmas``)."""
        d = self.m.defenses[label]
        cls = DEFENSES.get(d.kind)
        params = cls.Params.model_validate(d.params if sigma is None else {**d.params, "sigma": sigma})
        first = self.m.classifiers[guides[0]]
        info = DATASETS.get(first.dataset).info
        if d.weights is not None:
            return self._loaded_frontend(label, d, cls, params, info.input_shape, guides, sigma)
        deps: tuple[str, ...] = ()
        notes: list[str] = []
        data = ""
        dataset, n_train, n_val = None, None, None
        joint: list[JointClassifier] | None = None
        if cls.trains_classifier:
            joint = sorted(self.joint_classifiers(label, guides).values(), key=lambda c: c.index)
        elif cls.trainable:
            keys = [self.classifier(g) for g in guides]
            order = sorted(range(len(keys)), key=lambda i: keys[i])
            deps = tuple(keys[i] for i in order)
            for k in deps:
                notes.extend(self.graph[k].scale_notes)
        if cls.needs_data:
            train, data_notes = self._train_data(first.dataset, d.n_train, d.n_val)
            dataset, n_train, n_val = first.dataset, len(train), d.n_val or None
            data = train.identity
            notes.extend(f"front-end {label}: {n}" for n in data_notes)
            full = cls().epochs_at_full_scale(params)
            epochs = getattr(params, "epochs", None)
            if full is not None and epochs is not None and epochs < full:
                notes.append(f"front-end {label} trained {epochs} of {full} epochs")
        init_part = ""
        if d.init_from is not None:
            init = self._init_frontend(label, d.init_from, d.init_guides or guides, sigma)
            deps = (*deps, init.key)
            notes.extend(init.scale_notes)
            init_part = f", from {d.init_from}"
        config = FrontEndJobConfig(
            kind=d.kind,
            params=params,
            input_shape=info.input_shape,
            seed=d.seed,
            dataset=dataset,
            n_train=n_train,
            n_val=n_val,
            classifiers=joint,
        )
        guide_part = f" guides {'+'.join(guides)}" if cls.trainable else ""
        if cls.trains_classifier:
            guide_part += " (trained with it)"
        return self.graph.add(
            JobSpec(
                f"front-end {label} ({d.kind}){guide_part}{'' if sigma is None else f' sigma={sigma:g}'}"
                f"{init_part}",
                config,
                deps,
                data,
                _dedupe(notes),
            ),
            FrontEndUse(defense=label, guides=guides if cls.trainable else []),
        )

    def _init_frontend(self, label: str, init: str, guides: list[str], sigma: float | None) -> JobSpec:
        """The front-end job defense ``label`` starts its training from: defense ``init``'s, at the same σ
        when both are planned per σ, since a denoiser is trained for one noise level."""
        if label in self._initializing:  # validation refuses this first
            chain = " -> ".join([*self._initializing[self._initializing.index(label) :], label])
            raise ConfigError(f"defenses' init_from goes round in a circle: {chain}")
        if init not in self.m.defenses:  # validation refuses this first
            raise ConfigError(f"defenses.{label}.init_from: no defense {init!r} in the matrix")
        init_sigma = sigma if sigma is not None and self.declared_smoothing(init, guides) else None
        self._initializing.append(label)
        try:
            return self.frontend(init, guides, init_sigma)
        finally:
            self._initializing.pop()

    def _loaded_frontend(
        self,
        label: str,
        d: DefenseConfig,
        cls: type[Defense],
        params: DefenseParams,
        shape: tuple[int, int, int],
        guides: list[str],
        sigma: float | None,
    ) -> JobSpec:
        """The front-end job of a defense entry with ``weights``: nothing trained, so no upstream jobs and no
        data, keyed by the file's content; the file is loaded once now, so one that does not fit the defense's
        architecture stops the run before any work."""
        if cls.trains_classifier:  # validation refuses this first
            raise ConfigError(f"defense {label!r} ({d.kind}) trains its classifiers with its front-end; a "
                              "weights file holds no classifier")
        assert d.weights is not None
        path = resolve_path(d.weights, self.base_dir, self.env.data_root)
        config = FrontEndJobConfig(
            kind=d.kind, params=params, input_shape=shape, seed=d.seed, weights_sha256=sha256_file(path)
        )
        load_frontend_weights(new_frontend(config), load_state_dict_file(path), str(path))
        at = "" if sigma is None else f" sigma={sigma:g}"
        return self.graph.add(
            JobSpec(
                f"front-end {label} ({d.kind}) from {path.name}{at}",
                config,
                locations={"weights": str(path)},
            ),
            FrontEndUse(defense=label, guides=guides if cls.trainable else []),
        )

    # -- evaluation -------------------------------------------------------------------------------------
    def _evaluation(self, evald: ImageData, fe: JobSpec) -> EvaluatingJobConfig:
        """The evaluation settings every evaluating job (attack, cell, corruption) is keyed by; PREDICT's
        parameters only for a front-end that declares smoothing, so no other pipeline's keys change."""
        ev = self.m.evaluation
        return EvaluatingJobConfig(
            protocol=PROTOCOL_VERSION,
            n_eval=len(evald),
            eval_seed=ev.seed,
            batch_size=ev.batch_size,
            eot_samples=ev.eot_samples,
            vote_draws=ev.vote_draws,
            predict=DEFAULT_PREDICT if self.smoothing(fe) is not None else None,
        )

    def randomized(self, fe: JobSpec) -> bool:
        """Whether a front-end draws at random (which AutoAttack version the standard protocol runs), read
        from a freshly built one as the pipeline reads it from the trained one."""
        return self.declared(fe.settings_as(FrontEndJobConfig))[1]

    def declared(self, config: FrontEndJobConfig) -> tuple[GaussianSmoothing | None, bool]:
        """The smoothing a front-end of this configuration declares, and whether it draws at random."""
        what = json.dumps([config.kind, config.params.model_dump(mode="json"), config.input_shape])
        if what not in self._declared:
            built = new_frontend(config)
            self._declared[what] = (built.smoothing, bool(built.randomized))
        return self._declared[what]

    def attack_set(
        self, exp: Experiment, fe: JobSpec, norm: Norm
    ) -> tuple[list[tuple[str, AttackConfig]], list[str]]:
        """A cell's attacks (label, config) in the order they are planned, and the labels of those that
        cascade, in cascade order (they come first; the rest run side by side on every example)."""
        smoothed = self.smoothing(fe) is not None
        if self.m.standard_protocol is not None:
            planned, self._budget_changes = budgeted(
                standard_attacks(self.randomized(fe), smoothed), self.m.evaluation.standard_budget
            )
            chosen = [
                (a.label, AttackConfig(kind=a.kind, params=a.params, bpda=a.bpda))
                for a in planned
                if norm in ATTACKS.get(a.kind).norms
            ]
            if not chosen:
                raise ConfigError(
                    f"front-end {fe.label!r} declares smoothing, and the standard protocol attacks a "
                    f"smoothed pipeline only in {', '.join(ATTACKS.get(planned[0].kind).norms)}, not {norm}; "
                    "restrict the experiment's threats"
                )
            return chosen, [label for label, _ in chosen]
        attacks = self.m.attacks or {}
        names = exp.attacks or list(attacks)
        unsmoothed = [n for n in names if ATTACKS.get(attacks[n].kind).needs_smoothing]
        if unsmoothed and not smoothed:
            raise ConfigError(
                f"attack(s) {', '.join(map(repr, unsmoothed))} attack a smoothed classifier, but front-end "
                f"{fe.label!r} declares no smoothing; restrict the experiment's attacks"
            )
        cascade = [n for n in self.m.evaluation.cascade or [] if n in names]
        return [(n, attacks[n]) for n in cascade + [n for n in names if n not in cascade]], cascade

    def evaluate(self, exp_index: int, exp: Experiment, front_end: FrontEndPlan, target: str) -> None:
        defense, guides = front_end.defense, front_end.guides
        fe = self.frontend(defense, guides, front_end.sigma)
        if DEFENSES.get(self.m.defenses[defense].kind).trains_classifier and target in guides:
            tkey = self.joint_classifier(fe, defense, guides, target)
        else:
            tkey = self.classifier(target)
        retrains = self.retrains_classifier(defense, tkey)
        tcfg = self.m.classifiers[target]
        evald, eval_notes = self._eval_data(tcfg.dataset)
        evaluation = self._evaluation(evald, fe).model_dump()
        ev = self.m.evaluation
        trainable = DEFENSES.get(self.m.defenses[defense].kind).trainable
        relation = _relation(trainable, target, guides, tcfg.dataset, self.m.classifiers[guides[0]].dataset)
        upstream = _dedupe([*fe.scale_notes, *self.graph[tkey].scale_notes, *eval_notes])
        arch = tcfg.arch or tcfg.source
        assert arch is not None  # the classifier's schema demands one of them
        # A defense certified at several sigmas has one pipeline per sigma: the labels tell them apart.
        pipeline = defense if front_end.sigma is None else f"{defense} sigma={front_end.sigma:g}"

        def use(
            threat: str,
            norm: str,
            eps: float,
            attack: str,
            attacks: list[str] | None = None,
            cascade: list[str] | None = None,
        ) -> EvaluationUse:
            return EvaluationUse(
                experiment=exp_index,
                kind=exp.kind,
                relation=relation,
                defense=defense,
                defense_kind=self.m.defenses[defense].kind,
                guides=guides if trainable else [],
                target=target,
                arch=arch,
                dataset=tcfg.dataset,
                train_dataset=self.m.classifiers[guides[0]].dataset,
                m=front_end.m,
                draw=front_end.draw,
                threat=threat,
                norm=norm,
                eps=eps,
                attack=attack,
                attacks=attacks,
                # A cell's use (the one listing its attacks) says which protocol chose them.
                standard_protocol=self.m.standard_protocol if attacks is not None else None,
                cascade=cascade,
                retrains_classifier=retrains,
                sigma=front_end.sigma,
            )

        if self.m.corruptions is not None:
            self.corruptions(fe, tkey, evald, use, upstream)
        if self.m.certify is not None:
            self.certify(fe, tkey, use)
        standard = self.m.standard_protocol
        for tname in exp.threats or list(self.m.threats):
            threat = self.m.threats[tname]
            chosen, cascade = self.attack_set(exp, fe, threat.norm)
            # The attack jobs whose broken examples a cell at a larger radius of this threat also counts: per
            # smaller radius, the last job of the cascade (its survivors survived every earlier attack) and
            # every attack run side by side.
            smaller: list[str] = []
            for eps in sorted(threat.epsilons) if self.m.cumulative else threat.epsilons:
                attack_keys = []
                budget_notes: list[str] = []
                previous: tuple[str, ...] = ()
                for aname, a in chosen:
                    attack_cls = ATTACKS.get(a.kind)
                    params = attack_cls.Params.model_validate(a.params)
                    config = AttackJobConfig(
                        attack=a.kind,
                        revision=attack_cls.revision,
                        params=params,
                        bpda=a.bpda,
                        norm=threat.norm,
                        eps=eps,
                        standard_protocol=standard,
                        **evaluation,
                    )
                    budget = attack_cls(params).budget_note()
                    notes = [f"attack {a.kind}: {budget}"] if budget is not None else []
                    if aname in self._budget_changes:
                        notes.append(self._budget_changes[aname])
                    budget_notes.extend(notes)
                    job = self.graph.add(
                        JobSpec(
                            f"{aname} {threat.norm} eps={eps:g}: {pipeline} -> {target}",
                            config,
                            (fe.key, tkey, *(previous if aname in cascade else ())),
                            evald.identity,
                            _dedupe([*upstream, *notes]),
                        ),
                        use(tname, threat.norm, eps, aname),
                    )
                    attack_keys.append(job.key)
                    self._evaluations.append(job.key)
                    if aname in cascade:
                        previous = (job.key,)
                cell_config = CellJobConfig(
                    norm=threat.norm,
                    eps=eps,
                    checks=ev.checks,
                    n_checks=ev.n_checks,
                    standard_protocol=standard,
                    **evaluation,
                )
                labels = [aname for aname, _ in chosen]
                cell = self.graph.add(
                    JobSpec(
                        f"cell {threat.norm} eps={eps:g}: {pipeline} -> {target}",
                        cell_config,
                        (fe.key, tkey, *attack_keys, *smaller),
                        evald.identity,
                        _dedupe([*upstream, *budget_notes]),
                    ),
                    use(tname, threat.norm, eps, "worst-case", labels, cascade or None),
                )
                self._evaluations.append(cell.key)
                if self.m.cumulative:
                    alone = [k for k, label in zip(attack_keys, labels, strict=True) if label not in cascade]
                    smaller += [*previous, *alone]

    def corruptions(
        self,
        fe: JobSpec,
        tkey: str,
        evald: ImageData,
        use: Callable[[str, str, float, str], EvaluationUse],
        notes: tuple[str, ...],
    ) -> None:
        c = self.m.corruptions
        assert c is not None
        evaluation = self._evaluation(evald, fe).model_dump()
        names = list(CORRUPTIONS) if c.names == "all" else c.names
        for name in names:
            for severity in c.severities:
                config = CorruptionJobConfig(
                    corruption=name, severity=severity, seed=c.seed, version=CORRUPTION_VERSION, **evaluation
                )
                where = use("corruption", "corruption", float(severity), name)
                job = self.graph.add(
                    JobSpec(
                        f"{name} s{severity}: {where.defense} -> {where.target}",
                        config,
                        (fe.key, tkey),
                        evald.identity,
                        notes,
                    ),
                    where,
                )
                self._evaluations.append(job.key)

    # -- certification ----------------------------------------------------------------------------------
    def smoothing(self, fe: JobSpec) -> GaussianSmoothing | None:
        """The smoothing a front-end declares, read from a freshly built one as the certify job reads it from
        the trained one (and checks they agree)."""
        return self.declared(fe.settings_as(FrontEndJobConfig))[0]

    def declared_smoothing(self, defense: str, guides: list[str]) -> GaussianSmoothing | None:
        """The smoothing ``defense`` declares as the matrix configures it, without planning its job."""
        d = self.m.defenses[defense]
        config = FrontEndJobConfig(
            kind=d.kind,
            params=DEFENSES.get(d.kind).Params.model_validate(d.params),
            input_shape=DATASETS.get(self.m.classifiers[guides[0]].dataset).info.input_shape,
            seed=d.seed,
        )
        return self.declared(config)[0]

    def per_sigma(self, front_ends: list[FrontEndPlan]) -> list[FrontEndPlan]:
        """Each front-end of a smoothing defense once per ``certify.sigmas``; every other one as it is."""
        sigmas = self.m.certify.sigmas if self.m.certify is not None else None
        if sigmas is None:
            return front_ends
        planned = []
        for f in front_ends:
            if self.declared_smoothing(f.defense, f.guides) is None:
                planned.append(f)
            else:
                planned += [replace(f, sigma=s) for s in sigmas]
        return planned

    def certify(self, fe: JobSpec, tkey: str, use: Callable[[str, str, float, str], EvaluationUse]) -> None:
        """The certify job of a pipeline whose front-end declares smoothing (none for any other)."""
        c = self.m.certify
        assert c is not None
        smoothing = self.smoothing(fe)
        if smoothing is None:
            return
        target = self.graph[tkey].settings_as(ClassifierJobConfig)
        check_noise_space(smoothing, target)
        test = self.env.dataset(target.dataset, "test")
        ev = self.m.evaluation
        images = (
            CertifyImages(every=c.stride[0], count=c.stride[1])
            if c.stride is not None
            else CertifyImages(seed=ev.seed, count=c.n_images if c.n_images is not None else ev.n_eval)
        )
        chosen, _ = select_images(test, images)
        params = c.params
        config = CertifyJobConfig(
            version=CERTIFY_VERSION,
            sigma=smoothing.sigma,
            noise_space=smoothing.space,
            noise_std=None if smoothing.std is None else list(smoothing.std),
            n0=params.n0,
            n=params.n,
            alpha=params.alpha,
            noise_batch=params.noise_batch,
            seed=c.seed,
            images=images,
            radii=list(c.radii),
        )
        notes = [
            *fe.scale_notes,
            *self.graph[tkey].scale_notes,
            *self._split_note(test, "test"),
            *selection_notes(test, images, chosen),
        ]
        if params.n < FULL_SCALE_N:
            preset = f", as preset {c.preset}" if c.preset is not None else ""
            notes.append(f"CERTIFY with n={params.n:,} noise draws per image{preset} (Cohen et al. use "
                         f"{FULL_SCALE_N:,})")
        where = use("certify", "l2", 0.0, "certify").model_copy(
            update={"sigma": smoothing.sigma, "certify_preset": c.preset}
        )
        job = self.graph.add(
            JobSpec(
                f"certify sigma={smoothing.sigma:g}: {where.defense} -> {where.target}",
                config,
                (fe.key, tkey),
                chosen.identity,
                _dedupe(notes),
            ),
            where,
        )
        self._evaluations.append(job.key)

    def plan(self) -> Planned:
        joint = self._joint_guides()
        for label in self.m.classifiers:
            if label not in joint:
                self.classifier(label)
        for i, exp in enumerate(self.m.experiments):
            for defense in exp.defenses:
                for front_end in self.per_sigma(_front_ends(exp, defense)):
                    for target in front_end.targets:
                        self.evaluate(i, exp, front_end, target)
        return Planned(self.graph, tuple(dict.fromkeys(self._evaluations)))


@dataclass(frozen=True)
class FrontEndPlan:
    """One front-end an experiment trains and the targets it is evaluated on."""

    defense: str
    guides: list[str]
    targets: list[str]
    #: Ensemble size and draw, for ensemble-size experiments only.
    m: int | None = None
    draw: int | None = None
    #: The σ its smoothing defense is planned at (``certify.sigmas``); None for the defense's own.
    sigma: float | None = None


def _front_ends(exp: Experiment, defense: str) -> list[FrontEndPlan]:
    if isinstance(exp, NativeExperiment):
        return [FrontEndPlan(defense, s, list(dict.fromkeys(s))) for s in guide_sets(exp)]
    if isinstance(exp, EnsembleSizeExperiment):
        return [
            FrontEndPlan(defense, guides, list(exp.targets), m, draw)
            for m in exp.sizes
            for draw, guides in enumerate(_distinct_draws(list(exp.pool), m, exp.draws, exp.seed))
        ]
    return [FrontEndPlan(defense, s, list(exp.targets)) for s in guide_sets(exp)]


def _distinct_draws(pool: list[str], m: int, draws: int, seed: int) -> list[list[str]]:
    """Up to ``draws`` different guide sets of size m, as many as the pool has (one when m is its size).

    A repeated set would be the same front-end counted as another independent draw, which narrows the spread
    an ensemble-size plot shows; so a repeat is drawn again. Attempt k uses the seed string of draw k, so
    the sets drawn while none repeats are the same as without this rule.
    """
    pool = list(dict.fromkeys(pool))  # validation refuses repeats; never loop forever on one anyway
    wanted = min(draws, math.comb(len(pool), m))
    found: list[list[str]] = []
    attempt = 0
    while len(found) < wanted:
        rng = random.Random(f"{seed}:{m}:{attempt}")
        guides = sorted(rng.sample(pool, m), key=pool.index)
        if guides not in found:
            found.append(guides)
        attempt += 1
    return found


def _relation(trainable: bool, target: str, guides: list[str], target_ds: str, guide_ds: str) -> str:
    if not trainable:
        return "no-guides"
    if target in guides:
        return "native"
    return "cross-dataset" if target_ds != guide_ds else "cross-model"


def _normalization(
    c: ClassifierConfig, mean: tuple[float, ...], std: tuple[float, ...]
) -> Normalization:
    norm = c.normalization
    if isinstance(norm, Normalization):
        return norm
    if norm == "dataset" or norm is None:
        return Normalization(mean=list(mean), std=list(std))
    if norm == "none":
        return Normalization(mean=[0.0] * len(mean), std=[1.0] * len(std))
    return NamedNormalization[norm]


def _dedupe(notes: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(notes))


def plan_matrix(matrix: MatrixConfig, base_dir: Path, env: Env) -> Planned:
    return Planner(matrix, base_dir, env).plan()
