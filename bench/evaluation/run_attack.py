"""One attack on one pipeline over an evaluation set, with per-example outcomes and pass counts."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.api import Attack, ImageData, JobContext, Pipeline, Threat
from bench.evaluation.verify import verified_correct

#: Part of every evaluating job's key; bumped whenever the harness's judgment of an example changes (how clean
#: answers are drawn, how votes are counted, what an attack job stores), so outcomes judged the old way are
#: recomputed instead of reused.
PROTOCOL_VERSION = 3


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


def run_attack(
    pipeline: Pipeline,
    attack: Attack,
    data: ImageData,
    threat: Threat,
    ctx: JobContext,
    batch_size: int,
    attack_seed: int | None = None,
) -> AttackOutcome:
    """Attack the examples the pipeline gets right (the others are already counted as errors).

    Every clean prediction comes first, from the stream the front-end was seeded with: the harness seeds it
    the same way for every attack job of a cell, so a randomized pipeline is judged on the same clean answers
    whichever attack follows. ``attack_seed`` (when given) then restarts the stream for the attack itself and
    the votes on its examples.
    """
    attack.check(threat)
    pipeline.reset_counters()
    start = time.perf_counter()
    clean = [(pipeline.predict(x) == y) for x, y in data.batches(batch_size, ctx.device)]
    if attack_seed is not None:
        pipeline.frontend.reseed(attack_seed)
    robust, advs = [], []
    bar = ctx.progress(len(data), "attack", unit="img")
    for ok, (x, y) in zip(clean, data.batches(batch_size, ctx.device), strict=True):
        x_adv = x.clone()
        if bool(ok.any()):
            x_adv[ok] = attack.perturb(pipeline, x[ok], y[ok], threat, ctx).detach()
        still = verified_correct(pipeline, x, x_adv, y, threat)
        robust.append((ok & still).cpu())
        advs.append(x_adv.cpu())
        bar.update(x.shape[0])
    bar.close()
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
    )
