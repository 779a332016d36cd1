"""Transfer attacks: craft with PGD on a surrogate pipeline, propose the result to the target pipeline.

This is what a reviewer tries when the attacker is *not* given the target model: attack the undefended
classifier (is the front-end needed at all against transferred examples?) or the front-end with the guide it
was trained with (does robustness against a known guide carry over to an unseen target?). A transfer attack
is never evidence of robustness on its own: it is a weaker threat model than the adaptive white-box attacks
and belongs next to them, to show the gap (a transfer attack *beating* white-box PGD on the target is itself
a sign of masked gradients).

The attack only sees the target pipeline through ``perturb``, so it declares ``needs_surrogate`` and the
attack job runner builds the surrogate from the upstream jobs and hands it over with
:meth:`TransferPGD.bind_surrogate` before the first ``perturb``. The target pipeline is never queried: its
pass counters show only the harness's own verification, and the runner records the surrogate's separately.

The candidates are PGD's final iterates on the surrogate (``keep: final`` by default): a fully optimised,
high-loss point transfers better than the first iterate that barely fooled the surrogate.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from bench.api import Attack, AttackParams, JobContext, Norm, Pipeline, Threat, register_attack
from bench.attacks.pgd import PGD, PGDParams
from bench.errors import EvaluationError

SurrogateKind = Literal["undefended", "guide"]


class TransferParams(PGDParams):
    """PGD's parameters (used on the surrogate) plus which surrogate to craft on.

    ``undefended``: the target classifier without the front-end. ``guide``: the same front-end kind and
    weights with its first guide classifier (guide keys in the front-end job's order); only trainable
    defenses have guides.
    """

    surrogate: SurrogateKind = "undefended"
    keep: Literal["first-success", "final"] = "final"

    def pgd_params(self) -> PGDParams:
        return PGDParams.model_validate(self.model_dump(exclude={"surrogate"}))


@register_attack("transfer-pgd")
class TransferPGD(Attack):
    """PGD crafted on a surrogate (undefended target classifier, or front-end + guide) and transferred."""

    Params = TransferParams
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")
    #: The target pipeline is only handed candidates; gradients are the surrogate's.
    uses_gradients: ClassVar[bool] = False
    needs_surrogate: ClassVar[bool] = True
    source = (
        "Transfer attack (Papernot et al., Transferability in Machine Learning, arXiv 1605.07277) with PGD "
        "(Madry et al., ICLR 2018) as the crafting attack on a surrogate pipeline"
    )
    params: TransferParams

    def needs_guides(self) -> bool:
        return self.params.surrogate == "guide"

    def __init__(self, params: AttackParams | None = None) -> None:
        super().__init__(params)
        self.crafter = PGD(self.params.pgd_params())
        self.surrogate: Pipeline | None = None

    def bind_surrogate(self, pipeline: Pipeline) -> None:
        """Give the attack the pipeline it crafts on; the runner calls this before ``perturb``."""
        self.surrogate = pipeline

    def perturb(
        self, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        self.check(threat)
        if self.surrogate is None:
            raise EvaluationError(
                "transfer-pgd crafts its examples on a surrogate pipeline, but none was bound: call "
                "bind_surrogate(pipeline) before perturb (the attack job runner does this for attacks that "
                "declare needs_surrogate)"
            )
        if self.surrogate is pipeline:
            raise EvaluationError(
                "transfer-pgd was bound to the target pipeline itself: that is white-box PGD, not a transfer "
                "attack"
            )
        return self.crafter.perturb(self.surrogate, x, y, threat, ctx)
