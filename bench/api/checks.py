"""The soundness-check contract: what a check sees of a cell, what it returns, and the two registries.

Soundness checks run on every cell; a failed one marks the cell's number unreliable. Each check is a
registered function of a :class:`CellEvidence` (the cell's pipeline, data and the per-example outcomes of
every attack run on it) returning a :class:`CheckResult`. They exist because pre-processing defenses have a
long record of looking robust and being broken by adaptive attacks (Athalye et al. 2018, Carlini et al. 2019,
Tramer et al. 2020): a number is only shown without a warning if it passed them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.api.context import JobContext
from bench.api.data import ImageData
from bench.api.pipeline import Pipeline
from bench.api.registry import Registry
from bench.api.threat import Threat


@dataclass(frozen=True)
class AttackEvidence:
    label: str
    config: dict[str, Any]
    clean: torch.Tensor  # bool per example
    robust: torch.Tensor  # bool per example
    x_adv: torch.Tensor
    #: The attack's own account of its run (``Attack.describe()``), e.g. AutoAttack's warnings.
    report: dict[str, Any] = field(default_factory=dict)
    #: Input gradients the attack took, in images: all of them, the NaN/inf ones, the exactly-zero ones.
    n_backward: int = 0
    nonfinite_grads: int = 0
    zero_grads: int = 0
    #: Bool per example: the examples the attack ran on. In a cascade an attack runs only on the examples
    #: every earlier attack failed to break, and ``robust`` is False for the rest (they are already broken).
    #: None: every clean-correct example, as when attacks run side by side.
    attacked: torch.Tensor | None = None
    #: Bool per example: examples the attack left robust whose input gradient (margin loss, at the attack's
    #: final point) was exactly zero or of vanishing norm, so the attack had nothing to follow there. None for
    #: an attack that takes no gradients.
    dead_gradients: torch.Tensor | None = None


@dataclass(frozen=True)
class CellEvidence:
    make_pipeline: Callable[[], Pipeline]
    data: ImageData
    threat: Threat
    attacks: list[AttackEvidence]
    ctx: JobContext
    n_checks: int
    batch_size: int

    @property
    def worst_case(self) -> torch.Tensor:
        return worst_case(self.attacks)


def worst_case(attacks: Sequence[AttackEvidence], n: int | None = None) -> torch.Tensor:
    """Per example (of the first ``n``): robust only if every attack failed on it."""
    robust = attacks[0].robust[:n].clone()
    for a in attacks[1:]:
        robust &= a.robust[:n]
    return robust


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str
    #: Bool per check example (the first ``n_checks``): verified adversarial examples the check's own attacks
    #: found at a radius no larger than the cell's. Robust accuracy cannot rise with the radius, so the cell
    #: folds them into its worst case.
    counterexamples: torch.Tensor | None = None
    #: Labels of the cell's attacks whose own number the check found unreliable (dead gradients, say), even
    #: where another attack saved the cell's worst case; the per-attack table marks them.
    unreliable_attacks: tuple[str, ...] = ()


Check = Callable[[CellEvidence], CheckResult]

#: Checks that cost nothing beyond the stored outcomes; always run.
BASIC_CHECKS: Registry[Check] = Registry("check")
#: Checks that run extra attacks; run when the matrix's ``evaluation.checks`` is on.
ATTACK_CHECKS: Registry[Check] = Registry("check")


def register_check(
    name: str, *, runs_attacks: bool, description: str | None = None
) -> Callable[[Check], Check]:
    """Register a check: ``runs_attacks`` ones cost extra attacks and run only with ``evaluation.checks``."""
    return (ATTACK_CHECKS if runs_attacks else BASIC_CHECKS).register(name, description)
