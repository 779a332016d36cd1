"""Carlini & Wagner's L2 attack as Vaishnavi et al. use it: minimum-distortion, read at a fixed radius.

CW does not work inside a ball; it trades distortion against misclassification (``||d||^2 + c * f``) and
finds as small a perturbation as it can. Vaishnavi et al. count it a success only when that perturbation's L2
norm is at most a bound (3.0 on MNIST and Fashion-MNIST). The harness judges every candidate inside the
threat's ball, so the bound *is* the threat's radius: **put this attack in an L2 threat whose eps equals the
bound** (e.g. ``l2`` with ``epsilons: [3.0]``). ``max_l2`` caps the radius further when the threat is larger;
the radius used is ``min(max_l2, eps)``.

Per example the attack returns its smallest-L2 successful iterate within that radius, or the clean input when
none succeeded, projected into the ball for float safety. Examples are optimised together in tanh space with
Adam; success is tracked on device with no per-step host syncs. Gradients come from
:meth:`Pipeline.loss_and_grad`, so BPDA applies and randomized pipelines get the harness's EOT (success there
is read off the first draw, and the harness re-judges the returned point by majority over fresh draws).

Vaishnavi et al. give c = 100 and the bound, nothing else; they cite Defense-GAN, whose white-box CW runs
cleverhans with c = 100, 100 Adam steps at learning rate 10 and no binary search. Measured on a naturally
trained MNIST classifier (mnist-a, 100 test images), where the paper reports 0% accuracy under CW: that recipe
found no example within L2 3 (its steps land far outside); a fixed c = 100 at learning rate 0.01 left 63% of
the images unbroken within 3 after 200 steps and 36% after 1000 (Adam's step normalisation lets the large c
term drown the distance term). The preset is therefore Carlini & Wagner's own remedy, a per-example binary
search over c: from c = 1, three rounds of 100 Adam steps at learning rate 0.1, raising c tenfold (to the
paper's 100) where it has not fooled the model and halving it where it has. It left 2% of the same images
unbroken; on the adversarially trained mnist-a, 45% (100 images) where the fixed c = 100 at 200 steps had
left 68.6% (500 images).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, field_validator

from bench.api import Attack, AttackParams, JobContext, Norm, Pipeline, Threat, margin, register_attack

#: The preset's budget (see the module docstring): Adam steps per round, and rounds of the search over c.
REFERENCE_STEPS = 100
REFERENCE_ROUNDS = 3

#: Keeps atanh finite at the box edges (Carlini & Wagner's reference code uses the same factor).
_TANH_SHRINK = 0.999999


class CWParams(AttackParams):
    #: Adam steps per binary-search round.
    steps: int = Field(REFERENCE_STEPS, ge=1)
    lr: float = Field(0.1, gt=0.0)
    #: Weight of the misclassification term; fixed when binary_search_steps is 1, else the starting value.
    c: float = Field(1.0, gt=0.0)
    #: Confidence margin kappa: success needs the best other logit to beat the true one by more than kappa.
    kappa: float = Field(0.0, ge=0.0)
    #: Rounds of Carlini & Wagner's per-example binary search over c; 1 keeps c fixed.
    binary_search_steps: int = Field(REFERENCE_ROUNDS, ge=1)
    #: Successes count only up to this L2 distance (3.0 on MNIST and Fashion-MNIST in Vaishnavi et al.).
    max_l2: float = 3.0

    @field_validator("max_l2")
    @classmethod
    def _a_bound(cls, value: float) -> float:
        if not value > 0:  # also refuses NaN, which no distance is below
            raise ValueError(
                f"max_l2 is the L2 distance within which a CW example counts as adversarial (3.0 in "
                f"Vaishnavi et al.); a bound of {value} admits no perturbation: give a positive distance"
            )
        return value


@register_attack("cw-l2")
class CWL2(Attack):
    """Carlini & Wagner L2 (tanh space, Adam, logit margin); success counted only within the L2 bound."""

    Params = CWParams
    norms: ClassVar[tuple[Norm, ...]] = ("l2",)
    source = (
        "Carlini & Wagner, Towards Evaluating the Robustness of Neural Networks, IEEE S&P 2017 (L2 attack); "
        "bound of Vaishnavi et al., AAA (arXiv 1909.05921): success only within L2 <= 3.0 on MNIST; their "
        "c=100 is reached by a binary search from c=1 (3 rounds of 100 Adam steps at lr 0.1, kappa=0)"
    )
    params: CWParams

    def cost_per_example(self, pipeline: Pipeline) -> int:
        p = self.params
        return p.steps * p.binary_search_steps * pipeline.eot_samples

    def budget_note(self) -> str | None:
        p = self.params
        if p.steps >= REFERENCE_STEPS and p.binary_search_steps >= REFERENCE_ROUNDS:
            return None
        rounds = f"{p.binary_search_steps} of {REFERENCE_ROUNDS} rounds"
        return f"{rounds} of {p.steps} of {REFERENCE_STEPS} Adam steps"

    def perturb(
        self, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        self.check(threat)
        p = self.params
        bound = min(p.max_l2, threat.eps)
        b = x.shape[0]
        shape = (-1, *([1] * (x.dim() - 1)))
        kappa = p.kappa

        def f(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # CW's f_6: max(Z_t - max_{i != t} Z_i, -kappa); minimised, it stops pushing once past kappa.
            return (-margin(logits, t)).clamp_min(-kappa)

        c = torch.full((b,), p.c, device=x.device)
        lower = torch.zeros(b, device=x.device)
        upper = torch.full((b,), 1e10, device=x.device)
        best = x.clone()
        best_l2 = torch.full((b,), float("inf"), device=x.device)
        w0 = torch.atanh((x * 2 - 1) * _TANH_SHRINK)
        for _ in range(p.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=p.lr)
            fooled = torch.zeros(b, dtype=torch.bool, device=x.device)
            for _ in range(p.steps):
                x_adv = (torch.tanh(w.detach()) + 1) / 2
                _, grad_f = pipeline.loss_and_grad(x_adv, y, f)
                # The pass above saw x_adv: judge it now, before the step moves away from it.
                logits = pipeline.last_logits.float()
                boosted = logits.scatter_add(1, y.unsqueeze(1), torch.full_like(logits[:, :1], kappa))
                l2 = (x_adv - x).flatten(1).norm(dim=1)
                wrong = boosted.argmax(1) != y
                improve = wrong & (l2 <= bound) & (l2 < best_l2)
                best = torch.where(improve.view(shape), x_adv, best)
                best_l2 = torch.where(improve, l2, best_l2)
                fooled |= wrong
                # d/dx of ||x_adv - x||^2 + c f(x_adv), chained through x_adv = (tanh(w) + 1) / 2.
                grad_x = 2 * (x_adv - x) + c.view(shape) * grad_f
                w.grad = grad_x * (1 - torch.tanh(w.detach()) ** 2) / 2
                opt.step()
            if p.binary_search_steps > 1:
                # Carlini & Wagner's rule: a c that fooled the model at ANY distance is too large for the
                # smallest distortion, so it goes down. Deciding on "fooled within the bound" instead would
                # raise c wherever a large c overshot the bound, and drive the search away from the bound.
                upper = torch.where(fooled, torch.minimum(upper, c), upper)
                lower = torch.where(fooled, lower, torch.maximum(lower, c))
                bisect = (lower + upper) / 2
                c = torch.where(fooled | (upper < 1e9), bisect, c * 10)
        return threat.project(x, best)
