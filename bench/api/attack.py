"""The attack interface: a configured attack turns (pipeline, x, y, threat) into one candidate per example.

Attacks only *propose* adversarial examples. Whether a proposal counts is decided by the harness
(:mod:`bench.evaluation.verify`), which re-checks the ball and the box and re-classifies in a fresh pass,
so no attack, and no defense, is trusted on its own report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from bench.api.context import JobContext
from bench.api.pipeline import Pipeline
from bench.api.registry import Registry
from bench.api.threat import NORMS, Norm, Threat
from bench.errors import ConfigError


class AttackParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attack(ABC):
    Params: ClassVar[type[AttackParams]] = AttackParams
    #: Norms the attack can work in.
    norms: ClassVar[tuple[Norm, ...]] = NORMS
    #: Where a preset's protocol comes from, shown in ``bench list attacks`` and stored with results.
    source: ClassVar[str] = ""
    #: False for attacks that only query the pipeline's outputs (black-box).
    uses_gradients: ClassVar[bool] = True
    #: True for attacks crafted on another pipeline; the runner then calls ``bind_surrogate(pipeline)`` first.
    needs_surrogate: ClassVar[bool] = False
    #: True for attacks on a smoothed classifier, which need a front-end that declares smoothing; the
    #: planner refuses them against any other.
    needs_smoothing: ClassVar[bool] = False
    #: Part of the attack job's key: bump it when a change to the attack alters what it finds for the same
    #: parameters, so only this attack's stored outcomes are recomputed.
    revision: ClassVar[int] = 1

    def __init__(self, params: AttackParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def check(self, threat: Threat) -> None:
        if threat.norm not in self.norms:
            raise ConfigError(
                f"attack {type(self).__name__} works in {', '.join(self.norms)}, not {threat.norm}"
            )

    def needs_guides(self) -> bool:
        """Whether the attack needs the front-end's guide classifiers (untrainable defenses have none)."""
        return False

    def cost_per_example(self, pipeline: Pipeline) -> int:
        """Gradient evaluations per example (the floor of its wall time), or 0 when unknown."""
        return 0

    def budget_note(self) -> str | None:
        """What these parameters cut from the attack's reference budget (iterations, restarts, queries), or
        None at full budget: a weaker attack overstates robustness, so the harness reports the run as
        reduced scale, as it does for fewer training epochs."""
        return None

    @abstractmethod
    def perturb(
        self, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        """Adversarial candidates, one per example, inside the threat's ball and [0,1]."""

    def describe(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "params": self.params.model_dump(mode="json"),
            "source": self.source,
        }


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str, description: str | None = None) -> Callable[[type[Attack]], type[Attack]]:
    return ATTACKS.register(name, description)
