"""DnCNN (Zhang, Zuo, Chen, Meng & Zhang 2017) as Salman et al. (2020) use it for denoised smoothing, and its
wide variant DnCNN-wide (128 features instead of 64).

The layers, their order and their names follow microsoft/denoised-smoothing's ``code/archs/dncnn.py`` exactly
(one ``nn.Sequential`` named ``dncnn``: conv+ReLU, ``depth - 2`` times conv+BN+ReLU, conv), so the
``state_dict`` of their published denoisers (``dncnn.0.weight``, ``dncnn.0.bias``, ``dncnn.2.weight``,
``dncnn.3.weight``, ...) loads key for key. Their batch norm settings (eps 1e-4, momentum 0.95) are kept
too: the running statistics a published checkpoint carries were accumulated under them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import init

from bench.api import FrontEnd

#: Salman et al.'s DnCNN and DnCNN-wide: 17 convolutions of 64 (wide: 128) features.
DEPTH, WIDTH, WIDE_WIDTH = 17, 64, 128


class DnCNN(FrontEnd):
    """Residual denoiser: predicts the noise and subtracts it from its input, unclamped, as theirs does."""

    #: The output is the noisy input minus the predicted noise; nothing bounds it to the image box.
    output_range = (-math.inf, math.inf)

    def __init__(self, image_channels: int, depth: int = DEPTH, width: int = WIDTH) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"DnCNN needs at least its first and last convolution (depth >= 2), got {depth}")
        layers: list[nn.Module] = [
            nn.Conv2d(image_channels, width, kernel_size=3, padding=1, bias=True),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width, eps=1e-4, momentum=0.95),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, image_channels, kernel_size=3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)
        self._initialize_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise: torch.Tensor = self.dncnn(x)
        return x - noise

    def _initialize_weights(self) -> None:
        """Theirs: orthogonal convolutions, and the last one zero, so an untrained DnCNN is the identity and
        training starts from the noisy image rather than from noise added to it."""
        last: nn.Conv2d | None = None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                last = m
                init.orthogonal_(m.weight)
                if m.bias is not None:
                    init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                init.constant_(m.weight, 1)
                init.constant_(m.bias, 0)
        assert last is not None
        init.constant_(last.weight, 0)
