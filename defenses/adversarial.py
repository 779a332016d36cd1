"""Training-time PGD and held-out robust accuracy, shared by the front-ends adversarially trained through
frozen guides (Robustifier, RTFE).

Training PGD is the papers' plain variant: a uniform random start in the ball, fixed-size steps along the
threat's steepest-ascent direction, projection back into the ball and the image box, and the final iterate
(not the best one) as the training example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import FrontEnd, ImageData, JobContext, Threat, random_start, step_direction

#: What PGD ascends: a scalar loss of the perturbed images.
Objective = Callable[[torch.Tensor], torch.Tensor]


def pgd(
    objective: Objective,
    x: torch.Tensor,
    threat: Threat,
    step: float,
    steps: int,
    gen: torch.Generator,
    ctx: JobContext,
) -> torch.Tensor:
    """``steps`` steps of size ``step`` from a random start; the final iterate, detached.

    The forward passes run under the job's autocast: on a GPU they are most of a training step's work.
    """
    adv = random_start(x, threat, gen)
    for _ in range(steps):
        adv.requires_grad_(True)
        with ctx.autocast():
            loss = objective(adv)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = threat.project(x, adv.detach() + step * step_direction(grad, threat))
    return adv.detach()


def cross_entropy_through(frontend: nn.Module, guides: Sequence[nn.Module], y: torch.Tensor) -> Objective:
    """The mean over ``guides`` of CE(guide(frontend(·)), y): one guide's loss, or an ensemble's (Cann et al.,
    Eq. 8)."""

    def objective(adv: torch.Tensor) -> torch.Tensor:
        out = frontend(adv)
        losses = [F.cross_entropy(guide(out).float(), y) for guide in guides]
        return torch.stack(losses).mean()

    return objective


def robust_accuracy(
    frontend: FrontEnd,
    guides: Sequence[nn.Module],
    val: ImageData,
    threat: Threat,
    step: float,
    steps: int,
    batch_size: int,
    ctx: JobContext,
    salt: int,
) -> dict[str, float]:
    """Held-out accuracy through each guide, clean and under the training attack on that guide alone (what a
    stopping rule watches), with the front-end in eval mode as it will be evaluated, and its mode restored.

    The attack draws from a generator of its own, restarted on every call: validating never shifts
    training's random streams, and every epoch is judged on the same draws.
    """
    training = frontend.training
    frontend.eval()
    gen = ctx.generator(salt=salt, device=ctx.device)
    clean = adv = 0
    for x, y in val.batches(batch_size, ctx.device):
        for guide in guides:
            with torch.no_grad():
                clean += int((guide(frontend(x)).argmax(1) == y).sum())
            x_adv = pgd(cross_entropy_through(frontend, [guide], y), x, threat, step, steps, gen, ctx)
            with torch.no_grad():
                adv += int((guide(frontend(x_adv)).argmax(1) == y).sum())
    frontend.train(training)
    judged = len(val) * len(guides)
    return {"val_clean_accuracy": clean / judged, "val_adv_accuracy": adv / judged}
