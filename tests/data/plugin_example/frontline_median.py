"""Median smoothing (Xu et al. 2018, "Feature Squeezing") as a Frontline defense from another package."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from bench.api import Defense, DefenseParams, FrontEnd, register_defense


class MedianParams(DefenseParams):
    #: Side of the square window in pixels; odd, so that the window is centred on its pixel.
    size: Literal[3, 5] = 3


class MedianFilter(FrontEnd):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        padded = F.pad(x, [self.size // 2] * 4, mode="reflect")
        windows = F.unfold(padded, self.size).view(n, c, self.size**2, h * w)
        return windows.median(dim=2).values.view(n, c, h, w)


@register_defense("median")
class Median(Defense):
    """Median smoothing over a square window (Xu et al. 2018); differentiable, so attacked as it is."""

    Params = MedianParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return MedianFilter(params.size)
