"""Bit-depth reduction (Xu, Evans & Qi 2018, "Feature Squeezing"): round every pixel to 2^bits grey levels.

A classic broken baseline: rounding has a zero gradient almost everywhere, so gradient attacks that
differentiate it as written stall and report high robustness; with BPDA (the identity's gradient for the
rounding, Athalye et al. 2018) the same attacks go through wherever the radius can move a pixel across a
rounding threshold.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from pydantic import Field

from bench.api import Defense, DefenseParams, FrontEnd, NonDifferentiable, register_defense


def quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    return torch.round(x * levels) / levels


class BitDepthReduction(FrontEnd):
    def __init__(self, bits: int) -> None:
        super().__init__()
        self.squeeze = NonDifferentiable(partial(quantize, levels=2**bits - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.squeeze(x)
        return out


class BitDepthParams(DefenseParams):
    #: Bits per channel after squeezing; Xu et al. use 1 for MNIST and 4-5 for colour images.
    bits: int = Field(3, ge=1, le=8)


@register_defense("bit-depth")
class BitDepth(Defense):
    """Bit-depth reduction (Xu et al. 2018, feature squeezing); the rounding is declared for BPDA."""

    Params = BitDepthParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return BitDepthReduction(params.bits)
