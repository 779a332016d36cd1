"""Threat models: a norm and a radius, always in [0,1] pixel space."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from bench.errors import ConfigError

Norm = Literal["linf", "l2", "l1"]
NORMS: tuple[Norm, ...] = ("linf", "l2", "l1")

#: Slack when checking that an adversarial example lies in its ball: float32 rounding of x + delta.
BALL_SLACK = 1e-6


def max_radius(norm: Norm, input_shape: tuple[int, ...]) -> float:
    """The largest radius that still constrains anything in the unit box."""
    d = math.prod(input_shape)
    return {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[norm]


@dataclass(frozen=True)
class Threat:
    norm: Norm
    eps: float

    def __post_init__(self) -> None:
        # Matrix files are validated long before this, but attacks are also built from code: a zero radius
        # would silently report clean accuracy and a negative one would blame the attack.
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; expected one of {', '.join(NORMS)}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ConfigError(f"epsilon must be a positive finite radius, got {self.eps!r}")

    def distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        delta = (x_adv - x).flatten(1)
        out: torch.Tensor
        if self.norm == "linf":
            out = delta.abs().amax(dim=1)
        elif self.norm == "l2":
            out = delta.norm(p=2, dim=1)
        else:
            out = delta.abs().sum(dim=1)
        return out

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Nearest point (for linf/l2; a feasible point for l1) in the ball intersected with [0,1]."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = self.distance(x, x_adv).clamp_min(1e-12)
            factor = (self.eps / norms).clamp(max=1.0).view(-1, *([1] * (x.dim() - 1)))
            delta = delta * factor
        # Clamping to the box after shrinking keeps every coordinate between x and x+delta, so the norm of the
        # clamped perturbation can only fall: the result stays inside the ball.
        return (x + delta).clamp(0.0, 1.0)

    def violations(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-example mask of points outside the ball or the box (with float slack)."""
        outside_ball = self.distance(x, x_adv) > self.eps + BALL_SLACK * max(1.0, self.eps)
        flat = x_adv.flatten(1)
        outside_box = (flat.amin(dim=1) < -BALL_SLACK) | (flat.amax(dim=1) > 1.0 + BALL_SLACK)
        not_finite = ~torch.isfinite(flat).all(dim=1)
        return outside_ball | outside_box | not_finite
