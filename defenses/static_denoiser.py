"""A denoiser trained on static adversarial examples (after Liao et al. 2018, "Defense against Adversarial
Attacks Using High-Level Representation Guided Denoiser"), a classic broken baseline.

The adversarial examples are generated once, before training, by the harness's own PGD on the undefended
guide classifiers (each batch of training images on one guide, round robin); the denoiser never sees an
attack through itself. It learns to undo those fixed perturbations and nothing else, so it does well against
the static attack it was trained on and falls to any attack that differentiates through it end to end
(Athalye & Carlini 2018 broke Liao et al.'s denoiser exactly this way).

The loss is Liao et al.'s pixel-guided one, MSE(denoiser(x_adv), x): the guides only make the examples.
The network is AAA's small conv encoder-decoder (sigmoid output, so images stay in [0,1]). PGD proposes its
final iterate (``keep: final``), not the first that fools the guide: the denoiser trains on perturbations that
use the whole budget, like the examples Liao et al. trained on, rather than ones that barely cross the
boundary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from bench.api import (
    ATTACKS,
    Defense,
    DefenseParams,
    FrontEnd,
    Identity,
    ImageData,
    JobContext,
    Pipeline,
    ShuffledBatches,
    Stateful,
    Threat,
    TrainingState,
    register_defense,
)
from defenses.aaa import ConvAutoencoder
from defenses.reconstruction import mse_epoch

#: Images per PGD call when making the static examples; larger batches only cost memory.
ATTACK_BATCH = 256


class StaticDenoiserParams(DefenseParams):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    width: int = Field(8, ge=1)
    #: Threat the static examples are drawn from (pixel units).
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(0.3, gt=0)
    attack_steps: int = Field(10, ge=1)


@register_defense("static-denoiser")
class StaticDenoiser(Defense):
    """Denoiser trained on static PGD examples of the undefended guides (Liao et al. 2018); not adaptive."""

    Params = StaticDenoiserParams
    trainable = True
    needs_data = True

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return ConvAutoencoder(input_shape[0], params.width)

    def fit(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        train: ImageData,
        val: ImageData | None,
        params: Any,
        ctx: JobContext,
    ) -> dict[str, float]:
        ctx.seed_everything()
        device = ctx.device
        start = time.perf_counter()
        # A resumed run makes the examples again rather than reading them from every epoch's checkpoint: they
        # follow from the seed, and at full scale they are larger than the denoiser and its optimizer.
        clean = train.float_images(device)
        adv, fooled = static_examples(guides, clean, train.labels.to(device), params, ctx)
        attack_s = time.perf_counter() - start
        frontend.to(device).train()
        opt = torch.optim.Adam(frontend.parameters(), lr=params.lr)
        gen = ctx.generator(salt=0x5D, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, adv, clean)
        epoch_mse = torch.zeros((), device=device)
        parts: dict[str, Stateful | None] = {"frontend": frontend, "optimizer": opt}
        state = TrainingState(ctx, parts, {"shuffle": gen}, {"mse": epoch_mse})
        for _ in batches.epochs(state, params.epochs, "train static-denoiser"):
            epoch_mse.fill_(mse_epoch(frontend, opt, batches, ctx))
        frontend.eval()
        return {
            "train_wall_s": attack_s + state.elapsed_s(),
            "static_attack_wall_s": attack_s,
            "static_attack_success": fooled,
            "final_epoch_mse": float(epoch_mse),
        }


def static_examples(
    guides: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, params: Any, ctx: JobContext
) -> tuple[torch.Tensor, float]:
    """PGD examples of each batch on one undefended guide (round robin), and the fraction that fool it."""
    cls = ATTACKS.get("pgd")
    attack = cls(cls.Params.model_validate({"steps": params.attack_steps, "keep": "final"}))
    bare = [Pipeline(g, Identity()) for g in guides]
    threat = Threat(params.norm, params.eps)
    adv, fooled = torch.empty_like(x), 0
    for i, s in enumerate(range(0, x.shape[0], ATTACK_BATCH)):
        pipeline, part = bare[i % len(bare)], slice(s, s + ATTACK_BATCH)
        adv[part] = attack.perturb(pipeline, x[part], y[part], threat, ctx).detach()
        fooled += int((pipeline.predict(adv[part]) != y[part]).sum())
    return adv, fooled / max(1, x.shape[0])
