"""Square Attack (Andriushchenko et al. 2020): black-box random search, pyautoattack's ``SquareAttack`` class.

A score-based attack that only reads the pipeline's logits is the benchmark's check against gradient masking:
if it beats the white-box attacks, their gradients were useless (obfuscated, shattered or randomized), not the
defense strong. It is pyautoattack's code, run on the pipeline under no_grad, so the pipeline's counters show
it made no backward pass at all.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from bench.api import Attack, AttackParams, JobContext, Norm, Pipeline, Threat, register_attack
from bench.attacks.autoattack import AA_NORM, REFERENCE_N_QUERIES, captured_pyautoattack, image_side_check


class SquareParams(AttackParams):
    #: 5000 is the reference budget: pyautoattack's SquareAttack default, and AutoAttack's standard run.
    n_queries: int = Field(REFERENCE_N_QUERIES, ge=1)
    #: Initial fraction of pixels a square covers; it shrinks on pyautoattack's schedule.
    p_init: float = Field(0.8, gt=0.0, le=1.0)
    n_restarts: int = Field(1, ge=1)
    #: Seeds pyautoattack's draws (it reseeds the global RNG, which Frontline restores afterwards).
    seed: int = 0
    loss: Literal["margin", "ce"] = "margin"
    #: Stretch the p schedule (tuned for 10000 queries) to n_queries; AutoAttack's standard run leaves it off.
    rescale_schedule: bool = False


@register_attack("square")
class Square(Attack):
    """Score-based black-box Square Attack; queries logits only, never gradients."""

    Params = SquareParams
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")
    uses_gradients: ClassVar[bool] = False
    source = (
        "Andriushchenko, Croce, Flammarion & Hein, Square Attack: a query-efficient black-box adversarial "
        "attack via random search, ECCV 2020; pyautoattack (PyPI) SquareAttack class"
    )
    params: SquareParams

    def __init__(self, params: AttackParams | None = None) -> None:
        super().__init__(params)
        self.last_warnings: list[str] = []
        self.all_warnings: list[str] = []

    def perturb(
        self, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        self.check(threat)
        image_side_check("square", threat.norm, x)
        from pyautoattack.square import SquareAttack

        p = self.params
        with captured_pyautoattack([x.device]) as said, torch.no_grad():
            sq = SquareAttack(
                pipeline,
                norm=AA_NORM[threat.norm],
                n_queries=p.n_queries,
                eps=threat.eps,
                p_init=p.p_init,
                n_restarts=p.n_restarts,
                seed=p.seed,
                verbose=False,
                loss=p.loss,
                resc_schedule=p.rescale_schedule,
                device=x.device,
            )
            x_adv = sq.perturb(x, y)
        self.last_warnings = list(dict.fromkeys(said.warnings))
        self.all_warnings = list(dict.fromkeys(self.all_warnings + self.last_warnings))
        out: torch.Tensor = x_adv.detach().to(x.dtype)
        return threat.project(x, out)

    def budget_note(self) -> str | None:
        n = self.params.n_queries
        return f"{n} of {REFERENCE_N_QUERIES} queries" if n < REFERENCE_N_QUERIES else None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["warnings"] = list(self.all_warnings)
        return out
