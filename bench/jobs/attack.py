"""Attack one pipeline (front-end + target) at one radius with one attack; keep per-example outcomes.

In a cascade the job attacks only the examples the job before it (its one further dep) left robust, so its
robust mask is the cascade's running worst case, not the attack's own number: such a job records how many
examples it ran on and how many it broke, and no ``robust_accuracy`` row that would read as a standalone one.
"""

from __future__ import annotations

import hashlib

import torch

from bench.api import ATTACKS, Attack, BpdaMode, FrontEnd, Identity, ImageData, Pipeline, Threat
from bench.data.splits import eval_subset
from bench.errors import ConfigError
from bench.evaluation.judge import predict_details
from bench.evaluation.rows import Metric, ResultRow, accuracy_row, prediction_cost
from bench.evaluation.run_attack import run_attack
from bench.jobs.configs import AttackJobConfig, ClassifierJobConfig, EvaluatingJobConfig
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream


def eval_data(spec: JobSpec, upstream: Upstream, env: Env) -> ImageData:
    target = upstream.graph[spec.deps[1]].settings_as(ClassifierJobConfig)
    c = spec.settings_as(EvaluatingJobConfig)
    data = eval_subset(env.dataset(target.dataset, "test"), c.n_eval, c.eval_seed)
    if data.identity != spec.data:
        raise RuntimeError(f"evaluation data of {spec.label!r} changed since planning")
    return data


def derived_seed(*parts: str) -> int:
    """A seed no other consumer derives: hashed from what it is for, never a slice of a job key, which the
    executor already uses to seed the global RNG (an attack drawing from that RNG would replay the
    defense's noise draw for draw)."""
    return int(hashlib.sha256(":".join(parts).encode()).hexdigest()[:12], 16)


def judging_seed(spec: JobSpec) -> int:
    """One seed per (front-end, target, evaluation set): the attack jobs of a cell and the cell itself share
    it, so a randomized pipeline's clean answers are drawn once, not once per attack."""
    return derived_seed("judge", spec.deps[0], spec.deps[1], spec.data)


def attack_seed(spec: JobSpec) -> int:
    return derived_seed("defense-under-attack", spec.key)


def pipeline_for(spec: JobSpec, upstream: Upstream, *, bpda: BpdaMode = True) -> Pipeline:
    """The attacked pipeline; ``bpda="frontend"`` puts the whole front-end straight-through
    (:class:`bench.api.StraightThrough`, which the pipeline wraps it in)."""
    c = spec.settings_as(EvaluatingJobConfig)
    frontend = upstream.frontend(spec.deps[0])
    frontend.reseed(judging_seed(spec))
    classifier = upstream.classifier(spec.deps[1])
    return Pipeline(classifier, frontend, bpda=bpda, eot_samples=c.eot_samples, vote_draws=c.vote_draws)


def surrogate_pipeline(spec: JobSpec, upstream: Upstream, kind: str, *, bpda: BpdaMode = True) -> Pipeline:
    """The pipeline a transfer attack crafts on, built from the attack job's own upstream jobs.

    ``undefended`` is the target classifier (``spec.deps[1]``) behind the identity; ``guide`` is a fresh copy
    of the front-end (``spec.deps[0]``) with the first of its guide classifiers (the front-end job's deps, in
    the job's key order, or the first classifier it trained with the front-end), seeded apart from the
    target's copy so the two never share random draws.
    """
    c = spec.settings_as(AttackJobConfig)
    fe_key, target_key = spec.deps[0], spec.deps[1]
    frontend: FrontEnd
    if kind == "undefended":
        classifier, frontend = upstream.classifier(target_key), Identity()
    elif kind == "guide":
        guide = upstream.guide(fe_key)
        if guide is None:
            raise ConfigError(
                f"attack {c.attack!r} crafts on surrogate 'guide', but front-end job "
                f"{upstream.graph[fe_key].label!r} has no guide classifiers (its defense is not trainable); "
                "use surrogate: undefended"
            )
        classifier = guide
        frontend = upstream.frontend(fe_key)
        frontend.reseed(derived_seed("surrogate", spec.key))
    else:
        raise ConfigError(f"unknown surrogate {kind!r} for attack {c.attack!r} (valid: undefended, guide)")
    return Pipeline(classifier, frontend, bpda=bpda, eot_samples=c.eot_samples, vote_draws=c.vote_draws)


def bind_surrogate(
    attack: Attack, spec: JobSpec, upstream: Upstream, *, bpda: BpdaMode = True
) -> Pipeline | None:
    """Hand an attack that declares ``needs_surrogate`` its surrogate pipeline; None for other attacks."""
    if not type(attack).needs_surrogate:
        return None
    bind = getattr(attack, "bind_surrogate", None)
    if not callable(bind):
        raise ConfigError(
            f"attack {type(attack).__name__} declares needs_surrogate but has no bind_surrogate(pipeline) "
            "method"
        )
    kind = str(getattr(attack.params, "surrogate", "undefended"))
    surrogate = surrogate_pipeline(spec, upstream, kind, bpda=bpda)
    bind(surrogate)
    return surrogate


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(AttackJobConfig)
    data = eval_data(spec, upstream, env)
    pipeline = pipeline_for(spec, upstream, bpda=c.bpda)
    attack = ATTACKS.get(c.attack)(c.params)
    threat = Threat(c.norm, c.eps)
    surrogate = bind_surrogate(attack, spec, upstream, bpda=c.bpda)
    # A cascaded job's one further dep is the job before it: attack only what that one left robust.
    only = upstream.tensors(spec.deps[2], "outcomes")["robust"].bool() if len(spec.deps) > 2 else None
    out = run_attack(
        pipeline, attack, data, threat, env.ctx, c.batch_size, attack_seed(spec), only=only, predict=c.predict
    )
    use = upstream.graph.evaluation_use(spec.key)
    attacked = out.attacked if out.attacked is not None else out.clean
    run_on, broke = int(attacked.sum()), int((attacked & ~out.robust).sum())

    def row(metric: Metric, correct: torch.Tensor) -> ResultRow:
        return accuracy_row(
            use,
            attack=use.attack,
            metric=metric,
            correct=correct,
            examples=data.identity,
            wall_s=out.wall_s,
            n_forward=out.n_forward,
            n_backward=out.n_backward,
            scale_notes=spec.scale_notes,
            cost_per_prediction=prediction_cost(pipeline, c.predict),
            details=predict_details(pipeline, c.predict),
        )

    floor = attack.cost_per_example(pipeline) * run_on
    report = attack.describe()
    extra: dict[str, object] = {}
    # Every input gradient the attack took, the surrogate's included: a NaN there blinds a transfer attack.
    nonfinite, zero, backward = out.nonfinite_grads, out.zero_grads, out.n_backward
    if surrogate is not None:
        # The crafting cost is the surrogate's; the target's counters only show the harness's verification.
        extra = {"surrogate_n_forward": surrogate.n_forward, "surrogate_n_backward": surrogate.n_backward}
        s_nonfinite, s_zero = surrogate.gradient_report()
        nonfinite, zero, backward = nonfinite + s_nonfinite, zero + s_zero, backward + surrogate.n_backward
    outcomes = {
        "clean": out.clean.to(torch.uint8),
        "robust": out.robust.to(torch.uint8),
        "x_adv": out.x_adv.float(),
        "cost": torch.tensor([out.wall_s, out.n_forward, out.n_backward], dtype=torch.float64),
        "gradients": torch.tensor([nonfinite, zero, backward], dtype=torch.int64),
    }
    if only is not None:
        outcomes["attacked"] = attacked.to(torch.uint8)
    if out.dead is not None:
        outcomes["dead"] = out.dead.to(torch.uint8)
    # Run alone, the attack's robust mask is its own number; in a cascade it is the running worst case of
    # this attack and every one before it, kept under a name that says so.
    robust_metric: Metric = "robust_accuracy" if only is None else "cascade_robust_accuracy"
    return JobOutput(
        tensors={"outcomes": outcomes},
        metrics={
            "run_on": run_on,
            "broke": broke,
            "cascade": only is not None,
            "wall_s": out.wall_s,
            "n_forward": out.n_forward,
            "n_backward": out.n_backward,
            "gradient_floor": floor,
            "nonfinite_gradients": nonfinite,
            "zero_gradients": zero,
            "bpda_parts": pipeline.bpda_parts,
            "attack": report,
            **extra,
        },
        json={"attack": report},
        results=[row("clean_accuracy", out.clean), row(robust_metric, out.robust)],
    )
