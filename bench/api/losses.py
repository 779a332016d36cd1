"""Per-example attack objectives (larger = closer to a misclassification)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench.api.registry import Registry
from bench.errors import ConfigError


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def _other_max(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    masked = logits.scatter(1, y.unsqueeze(1), float("-inf"))
    return masked.amax(dim=1)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini & Wagner's logit margin: best other class minus the true class."""
    logits = logits.float()
    return _other_max(logits, y) - logits.gather(1, y.unsqueeze(1)).squeeze(1)


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Croce & Hein's Difference of Logits Ratio: the margin, made scale-invariant."""
    if logits.shape[1] < 3:
        raise ConfigError(
            "the DLR loss needs at least 3 classes (it divides by the top-1 minus top-3 logit), the pipeline "
            f"has {logits.shape[1]}; use loss: margin"
        )
    logits = logits.float()
    top = logits.sort(dim=1, descending=True).values
    scale = (top[:, 0] - top[:, 2]).clamp_min(1e-12)
    return margin(logits, y) / scale


LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("loss")
LOSSES.add("ce", cross_entropy, "cross-entropy")
LOSSES.add("margin", margin, "CW logit margin")
LOSSES.add("dlr", dlr, "difference of logits ratio (Croce & Hein 2020)")
