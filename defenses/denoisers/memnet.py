"""MemNet (Tai, Yang, Liu & Xu 2017), the persistent-memory denoiser Salman et al. (2020) use beside DnCNN.

Module names and structure follow microsoft/denoised-smoothing's ``code/archs/memnet.py`` exactly
(``feature_extractor``, ``dense_memory.<i>.recursive_unit.<j>.relu_conv{1,2}``,
``dense_memory.<i>.gate_unit``, ``reconstructor``, each a BN-ReLU-conv named ``bn``/``relu``/``conv``), so
their published MemNet denoisers load key for key. Their CIFAR-10 MemNet has 64 features and 3 memory blocks
of 6 residual blocks each.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.api import FrontEnd

#: Salman et al.'s CIFAR-10 MemNet.
WIDTH, MEMORY_BLOCKS, RESIDUAL_BLOCKS = 64, 3, 6


class MemNet(FrontEnd):
    """Dense memory blocks between a feature extractor and a reconstructor, plus a global skip connection;
    the output is not clamped, as theirs is not."""

    output_range = (-math.inf, math.inf)

    def __init__(
        self,
        in_channels: int,
        width: int = WIDTH,
        memory_blocks: int = MEMORY_BLOCKS,
        residual_blocks: int = RESIDUAL_BLOCKS,
    ) -> None:
        super().__init__()
        self.feature_extractor = BNReLUConv(in_channels, width)
        self.reconstructor = BNReLUConv(width, in_channels)
        self.dense_memory = nn.ModuleList(
            [MemoryBlock(width, residual_blocks, i + 1) for i in range(memory_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.feature_extractor(x)
        long_term = [out]
        for block in self.dense_memory:
            out = block(out, long_term)
        restored: torch.Tensor = self.reconstructor(out)
        return restored + x


class MemoryBlock(nn.Module):
    """A recursive unit of residual blocks whose outputs (short-term memory), together with every earlier
    block's output (long-term memory, ``earlier`` of them), feed a 1x1 gate."""

    def __init__(self, channels: int, residual_blocks: int, earlier: int) -> None:
        super().__init__()
        self.recursive_unit = nn.ModuleList([ResidualBlock(channels) for _ in range(residual_blocks)])
        self.gate_unit = BNReLUConv((residual_blocks + earlier) * channels, channels, 1, 1, 0)

    def forward(self, x: torch.Tensor, long_term: list[torch.Tensor]) -> torch.Tensor:
        """Appends the gate's output to ``long_term``, which the next memory block reads."""
        short_term = []
        for layer in self.recursive_unit:
            x = layer(x)
            short_term.append(x)
        gated: torch.Tensor = self.gate_unit(torch.cat(short_term + long_term, 1))
        long_term.append(gated)
        return gated


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.relu_conv1 = BNReLUConv(channels, channels)
        self.relu_conv2 = BNReLUConv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu_conv2(self.relu_conv1(x))
        return out + x


class BNReLUConv(nn.Sequential):
    def __init__(self, in_channels: int, channels: int, k: int = 3, s: int = 1, p: int = 1) -> None:
        super().__init__()
        self.add_module("bn", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, channels, k, s, p, bias=False))
