"""One attack on one pipeline over an evaluation set, with per-example outcomes and pass counts."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.api import Attack, ImageData, JobContext, Pipeline, Threat
from bench.evaluation.gradient_probe import dead, margin_gain
from bench.evaluation.judge import SmoothedPredict, declared_smoothing, judged
from bench.evaluation.verify import verified_correct

#: Part of every evaluating job's key; bumped whenever the harness's judgment of an example changes (how clean
#: answers are drawn, how votes are counted, what an attack job stores), so outcomes judged the old way are
#: recomputed instead of reused. Version 4: attack jobs store which examples they attacked and a dead-gradient
#: probe, and cells fold in the adversarial examples their checks and smaller radii found.
PROTOCOL_VERSION = 4


@dataclass(frozen=True)
class AttackOutcome:
    clean: torch.Tensor  # bool per example: right on the clean input
    robust: torch.Tensor  # bool per example: right on the clean input AND on the verified adversarial one
    x_adv: torch.Tensor
    n_forward: int
    n_backward: int
    wall_s: float
    #: Input gradients (in images) the attack took through the pipeline that were NaN/inf, or exactly zero.
    nonfinite_grads: int = 0
    zero_grads: int = 0
    #: Bool per example: the examples attacked (clean-correct, and among ``only`` when given).
    attacked: torch.Tensor | None = None
    #: Bool per example: robust examples whose margin gradient at the attack's final point is dead (zero or
    #: vanishing, :mod:`bench.evaluation.gradient_probe`); None for an attack that takes no gradients.
    dead: torch.Tensor | None = None


def run_attack(
    pipeline: Pipeline,
    attack: Attack,
    data: ImageData,
    threat: Threat,
    ctx: JobContext,
    batch_size: int,
    attack_seed: int | None = None,
    only: torch.Tensor | None = None,
    predict: SmoothedPredict | None = None,
) -> AttackOutcome:
    """Attack the examples the pipeline gets right (the others are already counted as errors) and, when
    ``only`` (bool per example) is given, that are among those: a cascade passes the examples every earlier
    attack failed to break. Examples left out count as not robust, since an earlier attack broke them.

    Every clean prediction comes first, from the stream the front-end was seeded with: the harness seeds it
    the same way for every attack job of a cell, so a randomized pipeline is judged on the same clean answers
    whichever attack follows. ``attack_seed`` (when given) then restarts the stream for the attack itself and
    the votes on its examples.

    A gradient attack's robust examples are then probed (:mod:`bench.evaluation.gradient_probe`): one more
    forward and backward pass each, counted in the attack's passes and gradient tally. The probe comes after
    every batch has been attacked and judged, so it draws nothing a randomized pipeline's attack or votes
    would have drawn.

    Every judgment (the clean answers, the re-check of each candidate) is
    :func:`~bench.evaluation.judge.judged`'s: for a pipeline whose front-end declares smoothing, PREDICT with
    ``predict``'s parameters on fresh noise, where an abstention counts as wrong.
    """
    attack.check(threat)
    pipeline.reset_counters()
    start = time.perf_counter()
    classes = data.info.num_classes
    smoothed = declared_smoothing(pipeline) is not None
    clean = [(judged(pipeline, x, classes, predict) == y) for x, y in data.batches(batch_size, ctx.device)]
    if attack_seed is not None:
        pipeline.frontend.reseed(attack_seed)
    robust, advs, attacked = [], [], []
    bar = ctx.progress(len(data), "attack", unit="img")
    for i, (ok, (x, y)) in enumerate(zip(clean, data.batches(batch_size, ctx.device), strict=True)):
        if only is not None:
            ok = ok & only[i * batch_size : i * batch_size + x.shape[0]].to(ok.device)
        attacked.append(ok.cpu())
        x_adv = x.clone()
        if bool(ok.any()):
            x_adv[ok] = attack.perturb(pipeline, x[ok], y[ok], threat, ctx).detach()
        if smoothed:
            # PREDICT costs n passes per image: spend them on the attacked examples only, since the rest
            # count as not robust whatever a re-check says. Other pipelines re-check the whole batch, as
            # they always have, so a randomized one's votes draw what they drew before.
            still = torch.zeros_like(ok)
            if bool(ok.any()):
                still[ok] = verified_correct(pipeline, x[ok], x_adv[ok], y[ok], threat, classes, predict)
        else:
            still = verified_correct(pipeline, x, x_adv, y, threat, classes, predict)
        robust.append((ok & still).cpu())
        advs.append(x_adv.cpu())
        bar.update(x.shape[0])
    bar.close()
    gradients = attack.uses_gradients
    dead_found = probe(pipeline, data, advs, robust, threat, ctx, batch_size) if gradients else None
    nonfinite, zero = pipeline.gradient_report()
    return AttackOutcome(
        torch.cat([c.cpu() for c in clean]),
        torch.cat(robust),
        torch.cat(advs),
        pipeline.n_forward,
        pipeline.n_backward,
        time.perf_counter() - start,
        nonfinite,
        zero,
        torch.cat(attacked),
        dead_found,
    )


def probe(
    pipeline: Pipeline,
    data: ImageData,
    advs: list[torch.Tensor],
    robust: list[torch.Tensor],
    threat: Threat,
    ctx: JobContext,
    batch_size: int,
) -> torch.Tensor:
    """Per example: robust, and its margin gradient at the attack's final point ``advs`` is dead."""
    found = []
    for (_, y), x_adv, ok in zip(data.batches(batch_size, ctx.device), advs, robust, strict=True):
        out = torch.zeros_like(ok)
        if bool(ok.any()):
            losses, gain = margin_gain(pipeline, x_adv[ok].to(ctx.device), y[ok.to(y.device)], threat)
            out[ok] = dead(losses, gain).cpu()
        found.append(out)
    return torch.cat(found)
