"""The geometry of a gradient step, shared by attacks and by adversarial training in defenses.

A leaf module (it imports only the threat model), so defenses can train adversarially without importing the
attack registry.
"""

from __future__ import annotations

import torch

from bench.api.threat import Threat


def random_start(xs: torch.Tensor, threat: Threat, gen: torch.Generator) -> torch.Tensor:
    """A uniform point of the Linf ball, or a uniformly scaled random direction in the L2 ball."""
    if threat.norm == "linf":
        noise = torch.rand(xs.shape, generator=gen, device=xs.device).mul_(2).sub_(1).mul_(threat.eps)
    else:
        noise = torch.randn(xs.shape, generator=gen, device=xs.device)
        norms = noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (xs.dim() - 1)))
        radius = torch.rand(xs.shape[0], generator=gen, device=xs.device).view_as(norms) * threat.eps
        noise = noise / norms * radius
    return threat.project(xs, xs + noise)


def step_direction(grad: torch.Tensor, threat: Threat) -> torch.Tensor:
    """Steepest ascent direction of unit size in the threat's norm."""
    if threat.norm == "linf":
        return torch.sign(grad)
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    out: torch.Tensor = grad / norms
    return out
